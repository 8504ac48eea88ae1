-- Live A/B trials of adapters (bot/trials.py): one row per trial, and each post's arm.

CREATE TABLE trials (
    id          INTEGER PRIMARY KEY,
    candidate   TEXT NOT NULL,                  -- the gate-passing adapter on trial
    incumbent   TEXT NOT NULL,                  -- the adapter serving when the trial started
    run_id      INTEGER REFERENCES training_runs (id),
    share       REAL NOT NULL,                  -- probability that a post goes to the candidate
    alpha       REAL NOT NULL,
    max_posts   INTEGER NOT NULL,
    seed        INTEGER NOT NULL,               -- the arm coin: arm of post k = assign_arm(seed, k, share)
    baselines   TEXT NOT NULL DEFAULT '{}',     -- JSON {channel: [median, spread]}, frozen at the start
    started_at  REAL NOT NULL,
    ended_at    REAL,
    verdict     TEXT CHECK (verdict IN ('promote', 'keep', 'futile', 'stopped', 'promoted_by_hand', 'replaced')),
    decided_by  TEXT,                           -- 'test', 'training', or who: 'user:<id>', 'cli'
    summary     TEXT
);
-- at most one trial running at a time
CREATE UNIQUE INDEX trials_active ON trials ((ended_at IS NULL)) WHERE ended_at IS NULL;

ALTER TABLE posts ADD COLUMN trial_id INTEGER REFERENCES trials (id);
ALTER TABLE posts ADD COLUMN arm TEXT CHECK (arm IN ('incumbent', 'candidate'));
CREATE INDEX posts_trial ON posts (trial_id, created_at);
