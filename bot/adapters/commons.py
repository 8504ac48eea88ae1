"""The commons as a serving `Policy` (bot/adapters/lineages.py): a quiet server is served by the commons.

    policy = commons_policy(settings)                  # KILROY_COMMONS, KILROY_COMMUNITY_MIN_POSTS
    lineages = Lineages(root, policy=policy)
    await policy.refresh(storage, now=time.time())   # settled posts per server (the bot: after each night)
    lineages.serving("g123") -> "commons/v0002" until g123 has 64 settled posts and its own gate passed
    policy.parent("g123", lineages) -> what g123's next adapter trains from (its own pointer, else the commons')

The decisions are the pure functions of bot/domain/commons.py; this only feeds them the pointers and the counts.
A server not counted yet is served by its own pointer if it has one (as `default_policy`), so a bot that has not
refreshed serves exactly what it served before the commons.
"""

from __future__ import annotations

from collections.abc import Mapping

from bot.adapters.lineages import Lineages
from bot.config.settings import Settings
from bot.domain import commons
from bot.domain.community import COMMONS, guild_of
from bot.storage import Storage


class CommonsPolicy:
    """`Policy`: (community, lineages) -> the reference serving it, by KILROY_COMMONS and KILROY_COMMUNITY_MIN_POSTS."""

    def __init__(self, *, mode: str, min_posts: int, settled: Mapping[int, int] | None = None) -> None:
        commons.pools(mode, None)  # validates the mode
        self.mode = mode
        self.min_posts = min_posts
        self.settled: dict[int, int] = dict(settled or {})  # per guild; a guild missing is "not counted yet"
        self.counted = settled is not None

    def __call__(self, community: str, lineages: Lineages) -> str:
        guild = guild_of(community)
        settled = None if guild is None or not self.counted else self.settled.get(guild, 0)
        return commons.serving(
            community,
            own=lineages.current(community),
            commons=lineages.current(COMMONS),
            settled=settled,
            min_posts=self.min_posts,
            mode=self.mode,
        )

    def parent(self, community: str, lineages: Lineages) -> str:
        """What `community`'s next adapter trains from: its own pointer, or the commons' for its first."""
        if community == COMMONS:
            return lineages.current(COMMONS)
        return commons.parent(lineages.current(community), lineages.current(COMMONS), self.mode)

    async def refresh(self, storage: Storage, *, now: float, settle_hours: float) -> None:
        """Count every server's settled posts (call after a night's training, and at start)."""
        self.settled = await storage.settled_by_guild(created_before=now - settle_hours * 3600.0)
        self.counted = True


def commons_policy(settings: Settings) -> CommonsPolicy:
    """The policy the settings ask for (the composition root builds `Lineages(root, policy=commons_policy(s))` and
    gives each server's runner `parent=lambda: policy.parent(community, lineages)`)."""
    return CommonsPolicy(mode=settings.training.commons, min_posts=settings.training.community_min_posts)
