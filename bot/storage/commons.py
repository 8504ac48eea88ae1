"""The commons (issue 24 part 2): each server admin's pooling choice, and how many settled posts a server has."""

from __future__ import annotations

from bot.storage._db import StorageBase


class CommonsMixin(StorageBase):
    """The commons_choices table, and the settled-post counts the serving policy reads."""

    async def commons_choices(self) -> dict[int, str]:
        """Every server admin's own choice, 'in' or 'out' (a server without a row follows KILROY_COMMONS)."""
        async with self.db.execute("SELECT guild_id, choice FROM commons_choices") as cur:
            return {int(g): str(c) for g, c in await cur.fetchall()}

    async def set_commons_choice(self, guild_id: int, choice: str | None, *, at: float) -> None:
        """Record a server's choice ('in', 'out'), or forget it (None: back to the bot-wide default). No member id
        is kept: nothing here for a forget-me to find."""
        if choice not in (None, "in", "out"):
            raise ValueError(f"a commons choice is 'in', 'out' or None, not {choice!r}")
        async with self._write:
            if choice is None:
                await self.db.execute("DELETE FROM commons_choices WHERE guild_id = ?", (guild_id,))
            else:
                await self.db.execute(
                    "INSERT INTO commons_choices (guild_id, choice, changed_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (guild_id) DO UPDATE SET choice = excluded.choice, changed_at = excluded.changed_at",
                    (guild_id, choice, at),
                )

    async def settled_by_guild(self, *, created_before: float) -> dict[int, int]:
        """Per server: its settled posts (trained or not; a forgotten member's redacted ones left out)."""
        async with self.db.execute(
            "SELECT guild_id, COUNT(*) FROM posts WHERE guild_id IS NOT NULL AND kind = 'post' AND redacted = 0 "
            "AND created_at <= ? GROUP BY guild_id",
            (created_before,),
        ) as cur:
            return {int(g): int(n) for g, n in await cur.fetchall()}
