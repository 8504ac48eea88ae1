-- Best-of-N posting (issue 21): every candidate drawn for a post, with the reward model's prediction. The candidates
-- are plain samples of the policy (the sent one is not), so nightly training learns from all of them.

CREATE TABLE IF NOT EXISTS post_candidates (
    post_id         INTEGER NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    idx             INTEGER NOT NULL,               -- draw order within the batch
    text            TEXT NOT NULL,
    completion_ids  TEXT NOT NULL,                  -- JSON list: the exact ids sampled (the post's prompt_ids apply)
    predicted       REAL,                           -- the reward model's predicted score; NULL without a model
    postable        INTEGER NOT NULL,               -- passed the output filter
    chosen          INTEGER NOT NULL,               -- the one sent
    PRIMARY KEY (post_id, idx)
);
