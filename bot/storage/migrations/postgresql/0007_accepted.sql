-- The gate's verdict is "accepted", for PostgreSQL (port of ../0007_accepted.sql).
ALTER TABLE training_runs RENAME COLUMN promoted TO accepted;
