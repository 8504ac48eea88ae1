-- Operations: a row the health check writes, the audit trail of dashboard actions, and the indexes that keep
-- per-member lookups (/forget-me) and time-ordered reads off full scans as the history grows.

CREATE TABLE IF NOT EXISTS ops_heartbeat (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    at  REAL NOT NULL
);

CREATE TABLE IF NOT EXISTS audit_log (
    id       INTEGER PRIMARY KEY,
    at       REAL NOT NULL,
    actor    TEXT NOT NULL,        -- 'dashboard', 'cli', or a hashed member id; never a raw Discord id
    action   TEXT NOT NULL,
    detail   TEXT NOT NULL DEFAULT '',
    outcome  TEXT NOT NULL
);

CREATE INDEX IF NOT EXISTS votes_member ON votes (member_id);
CREATE INDEX IF NOT EXISTS reaction_events_member ON reaction_events (member_id);
CREATE INDEX IF NOT EXISTS replies_member ON replies (member_id);
CREATE INDEX IF NOT EXISTS stories_started ON stories (started_at);
