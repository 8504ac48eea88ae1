-- Kilroy schema, version 2: privacy (forget-me, opt-out, retention), server scoping and the audit trail.

-- Members who asked to be forgotten. Only a keyed hash of their id is kept, so this table does not itself hold the
-- id it protects; the key is random per database (privacy_key).
CREATE TABLE opt_outs (
    member_hash  TEXT PRIMARY KEY,
    at           REAL NOT NULL
);
CREATE TABLE privacy_key (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    key  TEXT NOT NULL
);
INSERT INTO privacy_key (id, key) VALUES (1, lower(hex(randomblob(16))));

-- Who ran /retrain and /adapter use|rollback|trial ..., and when.
CREATE TABLE audit_log (
    id        INTEGER PRIMARY KEY,
    at        REAL NOT NULL,
    guild_id  INTEGER,
    actor_id  INTEGER,                 -- set to NULL when the actor asks to be forgotten
    action    TEXT NOT NULL,
    detail    TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_actor ON audit_log (actor_id);

-- A post whose prompt held a forgotten member's words: prompt blanked, never trained on.
ALTER TABLE posts ADD COLUMN redacted INTEGER NOT NULL DEFAULT 0;
CREATE INDEX posts_guild ON posts (guild_id, created_at);

-- Stories belong to a server; opening_custom says the opening is the starter's own words (old rows: assume so).
ALTER TABLE stories ADD COLUMN guild_id INTEGER;
ALTER TABLE stories ADD COLUMN opening_custom INTEGER NOT NULL DEFAULT 1;
CREATE INDEX stories_started_by ON stories (started_by);

-- forget-me and my-data look members up by id in every table
CREATE INDEX votes_member ON votes (member_id);
CREATE INDEX reaction_events_member ON reaction_events (member_id);
CREATE INDEX replies_member ON replies (member_id);
CREATE INDEX story_lines_member ON story_lines (member_id);
-- retention prunes by time
CREATE INDEX reaction_events_at ON reaction_events (at);
CREATE INDEX replies_at ON replies (at);
