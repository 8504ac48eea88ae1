-- The commons' per-server choice, for PostgreSQL (port of ../0010_commons.sql; the same statements).
-- 'in' or 'out'; no row means the bot-wide KILROY_COMMONS default.
CREATE TABLE commons_choices (
    guild_id BIGINT PRIMARY KEY,
    choice TEXT NOT NULL CHECK (choice IN ('in', 'out')),
    changed_at DOUBLE PRECISION NOT NULL
);
