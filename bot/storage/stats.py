"""/stats in SQL: per-post scores, their daily means and the top posts, computed by SQLite on the connection's thread.

The score is `score_post` expressed as SQL: for each member, the mean weight of their emoji on the post,
summed over members, plus the reply weight per distinct replying member. Doing it here keeps `/stats 365` over tens
of thousands of posts off the event loop (only a few rows come back) and holds no per-member dict in Python.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.domain.records import Post
from bot.storage._db import StorageBase
from bot.storage.posts import _post


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
        pairs = list(emoji_weights.items())
        weights = " UNION ALL ".join("SELECT ?, ?" for _ in pairs) or "SELECT NULL, NULL WHERE 0"
        # correlated subqueries: each post's votes and replies are found through their post-id indexes (a join to
        # an aggregated CTE had no index and took 40 s over 20k posts)
        cte = f"""
            WITH w(emoji, weight) AS ({weights}),
            scored AS (
                SELECT p.*,
                    COALESCE((SELECT SUM(mean_weight) FROM (
                        SELECT AVG(COALESCE(w.weight, ?)) AS mean_weight FROM votes v LEFT JOIN w ON w.emoji = v.emoji
                        WHERE v.post_id = p.id GROUP BY v.member_id)), 0)
                    + ? * (SELECT COUNT(DISTINCT r.member_id) FROM replies r WHERE r.post_id = p.id) AS score
                FROM posts p WHERE p.redacted = 0 AND p.created_at > ? AND p.guild_id = ?)
        """
        args: list[Any] = [x for pair in pairs for x in pair] + [default_weight, reply_weight, created_after, guild_id]
        async with self.db.execute(
            # an A/B trial's posts form their own series, labelled with their arm (as the pure daily_scores does)
            cte + "SELECT strftime('%Y-%m-%d', created_at, 'unixepoch') AS day, "
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
            best.append((score, _post([(k,) for k in d], list(d.values()))))
        return StatsSummary(sum(n for *_, n in days), days, best)
