-- Best-of-N posting's candidates, for PostgreSQL (port of ../0008_candidates.sql).

CREATE TABLE IF NOT EXISTS post_candidates (
    post_id         BIGINT NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    idx             INTEGER NOT NULL,
    text            TEXT NOT NULL,
    completion_ids  TEXT NOT NULL,
    predicted       DOUBLE PRECISION,
    postable        INTEGER NOT NULL,
    chosen          INTEGER NOT NULL,
    PRIMARY KEY (post_id, idx)
);
