-- The promotion sequence is recorded step by step, so an interrupted one can be finished at the next start.
-- stage: training -> committed (the worker wrote the candidate and claimed its posts; status still 'running')
--        -> marked (posts trained, run closed) -> swapped -> promoted | kept | refused
ALTER TABLE training_runs ADD COLUMN stage TEXT NOT NULL DEFAULT 'training';
UPDATE training_runs SET stage = 'closed' WHERE status != 'running';
-- posts.trained_run is set when a committed run claims a post; trained_at when the bot marks it trained
CREATE INDEX posts_trained_run ON posts (trained_run);
-- written but never read: adapter metadata lives with the adapter (meta.json) and in training_runs
DROP TABLE adapter_versions;
