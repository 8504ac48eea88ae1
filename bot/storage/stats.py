"""/stats in SQL: per-post scores, their daily means and the top posts, computed by the database.

The scores come from the one SQL score formula (`scores.py`), so `/stats 365` over tens of thousands of posts stays
off the event loop (only a few rows come back).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bot.config.settings import ScoreFormula
from bot.domain.records import Post
from bot.storage._db import StorageBase
from bot.storage.posts import _post
from bot.storage.scores import scored_cte


@dataclass(frozen=True)
class StatsSummary:
    posts: int
    days: list[tuple[str, str, float, int]]  # (YYYY-MM-DD, adapter, mean score, posts), in date order
    top: list[tuple[float, Post]]  # best first


class StatsMixin(StorageBase):
    """Engagement statistics for one server."""

    async def stats_summary(
        self,
        *,
        created_after: float,
        guild_id: int,
        emoji_weights: Mapping[str, float],
        default_weight: float,
        reply_weight: float,
        top: int = 5,
    ) -> StatsSummary:
        """Daily mean scores per adapter and the `top` posts of one server since a time."""
        formula = ScoreFormula(emoji_weights, default_weight, reply_weight)
        cte, args = scored_cte(
            formula, "p.redacted = 0 AND p.created_at > ? AND p.guild_id = ?", [created_after, guild_id]
        )
        async with self.db.execute(
            # an A/B trial's posts form their own series, labelled with their arm (as the pure daily_scores does)
            cte + f"SELECT {self.dialect.day('created_at')} AS day, "
            "CASE WHEN arm IS NULL THEN adapter ELSE adapter || ' (' || arm || ')' END AS series, AVG(score), COUNT(*) "
            "FROM scored GROUP BY day, series ORDER BY day, series",
            args,
        ) as cur:
            days = [(str(d), str(a), float(m), int(n)) for d, a, m, n in await cur.fetchall()]
        async with self.db.execute(cte + "SELECT * FROM scored ORDER BY score DESC, id LIMIT ?", [*args, top]) as cur:
            names = [c[0] for c in cur.description]
            rows = await cur.fetchall()
        best = []
        for row in rows:
            d = dict(zip(names, row, strict=True))
            score = float(d.pop("score"))
            for extra in ("vote_score", "voters", "repliers"):
                del d[extra]
            best.append((score, _post([(k,) for k in d], list(d.values()))))
        return StatsSummary(sum(n for *_, n in days), days, best)
