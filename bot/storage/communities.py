"""Per-community queries (issue 24): which servers posted, and how much each has to learn from.

A community is a guild (bot/domain/community.py); posts carry `guild_id`, training runs and trials `community`.
"""

from __future__ import annotations

from bot.storage._db import StorageBase


class CommunitiesMixin(StorageBase):
    """Queries across communities."""

    async def guilds_with_posts(self) -> list[int]:
        """Every guild that has a post (any adapter), ascending."""
        async with self.db.execute(
            "SELECT DISTINCT guild_id FROM posts WHERE guild_id IS NOT NULL ORDER BY guild_id"
        ) as cur:
            return [int(r[0]) for r in await cur.fetchall()]

    async def untrained_settled_by_guild(self, *, created_before: float) -> dict[int, int]:
        """Per guild: its settled posts no run has trained on or claimed yet (the night's staleness order)."""
        async with self.db.execute(
            "SELECT guild_id, COUNT(*) FROM posts WHERE guild_id IS NOT NULL AND kind = 'post' AND redacted = 0 "
            "AND trained_at IS NULL AND trained_run IS NULL AND created_at <= ? GROUP BY guild_id",
            (created_before,),
        ) as cur:
            return {int(g): int(n) for g, n in await cur.fetchall()}
