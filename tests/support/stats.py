"""Pure engagement statistics for /stats: mean score per day and adapter, and the top posts."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.domain.scoring import ScoreFormula, score_post

if TYPE_CHECKING:
    from bot.storage import Post, PostRecord


@dataclass(frozen=True)
class DayStat:
    day: str  # YYYY-MM-DD (UTC)
    adapter: str
    mean_score: float
    posts: int


def daily_scores(records: Sequence[PostRecord], formula: ScoreFormula) -> list[DayStat]:
    """Mean score per (day, adapter), in date order; an A/B trial's posts are labelled with their arm as well."""
    groups: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in records:
        day = dt.datetime.fromtimestamp(r.post.created_at, tz=dt.UTC).strftime("%Y-%m-%d")
        label = f"{r.post.adapter} ({r.post.arm})" if r.post.arm else r.post.adapter
        groups[(day, label)].append(score_post(r, formula))
    return [DayStat(d, a, sum(v) / len(v), len(v)) for (d, a), v in sorted(groups.items())]


def top_posts(records: Sequence[PostRecord], formula: ScoreFormula, k: int = 5) -> list[tuple[float, Post]]:
    """The k best-scoring posts, best first."""
    scored = sorted(((score_post(r, formula), r.post) for r in records), key=lambda x: (-x[0], x[1].id))
    return scored[:k]
