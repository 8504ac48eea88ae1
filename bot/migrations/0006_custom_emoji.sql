-- A custom emoji is keyed `<:name:id>`, without the animated flag: Discord leaves that flag out of removal events, so
-- an `<a:name:id>` vote could never be removed. Rewrite the keys stored before; a duplicate (the same member's vote
-- under both forms) collapses into one.
UPDATE OR IGNORE votes SET emoji = '<:' || substr(emoji, 4) WHERE emoji LIKE '<a:%';
DELETE FROM votes WHERE emoji LIKE '<a:%';
UPDATE reaction_events SET emoji = '<:' || substr(emoji, 4) WHERE emoji LIKE '<a:%';
