-- Communities (issue 24), for PostgreSQL (port of ../0009_communities.sql: portable SQL, the same statements).

-- which lineage a training run trained (NULL: a run from before communities)
ALTER TABLE training_runs ADD COLUMN community TEXT;
CREATE INDEX training_runs_community ON training_runs (community, id);
-- a run interrupted mid-promotion before this migration finishes in the commons, which holds the old flat versions
UPDATE training_runs SET community = 'commons' WHERE stage IN ('committed', 'marked', 'swapped');

-- which lineage a trial compares; at most one running trial per community (was: one in all)
ALTER TABLE trials ADD COLUMN community TEXT;
DROP INDEX trials_active;
CREATE UNIQUE INDEX trials_active_community ON trials (community) WHERE ended_at IS NULL;
-- a running trial compared flat adapters that now live in every server's lineage: it ends, whatever serves stays
UPDATE trials SET ended_at = started_at, verdict = 'stopped', decided_by = 'migration 0009',
    summary = 'ended by the move to per-community adapters' WHERE ended_at IS NULL;

-- posts name the adapter that wrote them by its reference '<community>/<version>' ('base' unchanged); the flat
-- versions a server posted with move into that server's lineage (bot/adapters/migrate.py), posts without a server
-- into the commons
UPDATE posts SET adapter = 'g' || CAST(guild_id AS TEXT) || '/' || adapter
    WHERE guild_id IS NOT NULL AND adapter <> 'base' AND adapter NOT LIKE '%/%';
UPDATE posts SET adapter = 'commons/' || adapter
    WHERE guild_id IS NULL AND adapter <> 'base' AND adapter NOT LIKE '%/%';
