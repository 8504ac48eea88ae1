-- Kilroy schema, version 1. Times are UTC unix seconds (REAL); Discord ids are INTEGER.

CREATE TABLE posts (
    id              INTEGER PRIMARY KEY,
    message_id      INTEGER UNIQUE,              -- Discord message id (synthetic in the simulation)
    channel_id      INTEGER NOT NULL,
    guild_id        INTEGER,
    kind            TEXT NOT NULL CHECK (kind IN ('post', 'story')),
    text            TEXT NOT NULL,
    prompt          TEXT NOT NULL DEFAULT '',
    prompt_ids      TEXT NOT NULL DEFAULT '[]',  -- JSON list: the exact token ids the post was sampled from
    completion_ids  TEXT NOT NULL DEFAULT '[]',  -- JSON list: the exact sampled token ids
    adapter         TEXT NOT NULL,
    params          TEXT NOT NULL DEFAULT '{}',  -- JSON: sampling settings
    created_at      REAL NOT NULL,
    trained_at      REAL,                        -- set once a training run has used this post
    trained_run     INTEGER
);
CREATE INDEX posts_created ON posts (created_at);
CREATE INDEX posts_untrained ON posts (trained_at, created_at);

-- Current votes: one row per (post, member, emoji). A removal deletes the row.
CREATE TABLE votes (
    post_id    INTEGER NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    member_id  INTEGER NOT NULL,
    emoji      TEXT NOT NULL,
    at         REAL NOT NULL,
    PRIMARY KEY (post_id, member_id, emoji)
);

-- Every reaction event seen, for audit and stats; bots' events are logged with is_bot=1 but never become votes.
CREATE TABLE reaction_events (
    id         INTEGER PRIMARY KEY,
    post_id    INTEGER NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    member_id  INTEGER NOT NULL,
    emoji      TEXT NOT NULL,
    action     TEXT NOT NULL CHECK (action IN ('add', 'remove')),
    is_bot     INTEGER NOT NULL DEFAULT 0,
    at         REAL NOT NULL
);
CREATE INDEX reaction_events_post ON reaction_events (post_id);

-- Replies to our posts. Only metadata: members' words are not stored.
CREATE TABLE replies (
    message_id  INTEGER PRIMARY KEY,
    post_id     INTEGER NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    member_id   INTEGER NOT NULL,
    length      INTEGER NOT NULL DEFAULT 0,
    at          REAL NOT NULL
);
CREATE INDEX replies_post ON replies (post_id);

CREATE TABLE training_runs (
    id           INTEGER PRIMARY KEY,
    reason       TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed', 'skipped')),
    started_at   REAL NOT NULL,
    finished_at  REAL,
    adapter      TEXT,
    promoted     INTEGER,
    message      TEXT,
    metrics      TEXT NOT NULL DEFAULT '{}'
);

CREATE TABLE adapter_versions (
    name        TEXT PRIMARY KEY,
    parent      TEXT,
    run_id      INTEGER REFERENCES training_runs (id),
    created_at  REAL NOT NULL,
    metrics     TEXT NOT NULL DEFAULT '{}'
);

CREATE TABLE stories (
    id           INTEGER PRIMARY KEY,
    channel_id   INTEGER NOT NULL,
    instruction  TEXT NOT NULL,
    opening      TEXT NOT NULL,
    started_by   INTEGER,
    started_at   REAL NOT NULL,
    ended_at     REAL
);
-- one active story per channel or thread
CREATE UNIQUE INDEX stories_active ON stories (channel_id) WHERE ended_at IS NULL;

CREATE TABLE story_lines (
    story_id   INTEGER NOT NULL REFERENCES stories (id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,
    speaker    TEXT NOT NULL CHECK (speaker IN ('human_director', 'machine_director')),
    text       TEXT NOT NULL,
    member_id  INTEGER,
    post_id    INTEGER REFERENCES posts (id),
    at         REAL NOT NULL,
    PRIMARY KEY (story_id, seq)
);
