-- Custom emoji keyed `<:name:id>`, for PostgreSQL (port of ../0006_custom_emoji.sql). PostgreSQL has no
-- UPDATE OR IGNORE: the `<a:` duplicates of a vote already stored under `<:` go first, then the rest is rewritten.
DELETE FROM votes a WHERE a.emoji LIKE '<a:%' AND EXISTS (
    SELECT 1 FROM votes b
    WHERE b.post_id = a.post_id AND b.member_id = a.member_id AND b.emoji = '<:' || substr(a.emoji, 4));
UPDATE votes SET emoji = '<:' || substr(emoji, 4) WHERE emoji LIKE '<a:%';
UPDATE reaction_events SET emoji = '<:' || substr(emoji, 4) WHERE emoji LIKE '<a:%';
