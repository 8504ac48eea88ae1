-- Operations: a row the health check writes, and the indexes that keep per-member lookups (/forget-me) and
-- time-ordered reads off full scans as the history grows (IF NOT EXISTS: 0002 creates some of them too).
-- Dashboard actions go to the audit_log of 0002.

CREATE TABLE IF NOT EXISTS ops_heartbeat (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    at  REAL NOT NULL
);

CREATE INDEX IF NOT EXISTS votes_member ON votes (member_id);
CREATE INDEX IF NOT EXISTS reaction_events_member ON reaction_events (member_id);
CREATE INDEX IF NOT EXISTS replies_member ON replies (member_id);
CREATE INDEX IF NOT EXISTS stories_started ON stories (started_at);
