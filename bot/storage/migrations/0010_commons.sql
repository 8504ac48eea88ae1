-- The commons (issue 24 part 2): a server admin's own choice about pooling the server's posts into the commons,
-- 'in' or 'out'; no row means the bot-wide KILROY_COMMONS default. Portable SQL (ported to PostgreSQL as is).
CREATE TABLE commons_choices (
    guild_id BIGINT PRIMARY KEY,
    choice TEXT NOT NULL CHECK (choice IN ('in', 'out')),
    changed_at DOUBLE PRECISION NOT NULL
);
