-- A custom emoji is keyed `<:name:id>`, without the animated flag: Discord has sent that flag inconsistently (not at
-- all in removal events until 2023), so an `<a:name:id>` vote could outlive its removal. Rewrite the keys stored before; a duplicate (the same member's vote
-- under both forms) collapses into one.
UPDATE OR IGNORE votes SET emoji = '<:' || substr(emoji, 4) WHERE emoji LIKE '<a:%';
DELETE FROM votes WHERE emoji LIKE '<a:%';
UPDATE reaction_events SET emoji = '<:' || substr(emoji, 4) WHERE emoji LIKE '<a:%';
