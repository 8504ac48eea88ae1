-- Operations, for PostgreSQL (port of ../0004_ops.sql): the health check's row and per-member/time indexes.

CREATE TABLE IF NOT EXISTS ops_heartbeat (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    at  DOUBLE PRECISION NOT NULL
);

CREATE INDEX IF NOT EXISTS votes_member ON votes (member_id);
CREATE INDEX IF NOT EXISTS reaction_events_member ON reaction_events (member_id);
CREATE INDEX IF NOT EXISTS replies_member ON replies (member_id);
CREATE INDEX IF NOT EXISTS stories_started ON stories (started_at);
