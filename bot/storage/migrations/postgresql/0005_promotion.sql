-- The promotion sequence, step by step, for PostgreSQL (port of ../0005_promotion.sql).
ALTER TABLE training_runs ADD COLUMN stage TEXT NOT NULL DEFAULT 'training';
UPDATE training_runs SET stage = 'closed' WHERE status != 'running';
CREATE INDEX posts_trained_run ON posts (trained_run);
DROP TABLE adapter_versions;
