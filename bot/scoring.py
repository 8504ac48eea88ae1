"""Pure scoring: stored engagement -> one score per post -> normalised rewards.

Rules (DESIGN.md): only unique human members count; bots and the bot itself never reach the votes table; a removed
reaction is a removed vote. One vote per member per post: a member who reacts with several emoji contributes the
mean of their weights, so piling emoji on a post cannot outvote other members. A member who replies adds
`reply_weight` once, however many replies they write.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.storage import PostRecord

REWARD_CLIP = 2.5


@dataclass(frozen=True)
class ScoreFormula:
    """How engagement turns into a score. Data, not code: it comes from Settings."""

    emoji_weights: Mapping[str, float] = field(default_factory=lambda: {"👎": -1.0})
    default_emoji_weight: float = 1.0
    reply_weight: float = 2.0
    settle_hours: float = 12.0

    def weight(self, emoji: str) -> float:
        """The weight of one emoji (custom emoji are matched by their text form `<:name:id>`)."""
        return float(self.emoji_weights.get(emoji, self.default_emoji_weight))


def score_post(record: PostRecord, formula: ScoreFormula, *, exclude_member: int | None = None) -> float:
    """The post's score: sum over unique human members of their vote, plus reply weight per replying member."""
    by_member: dict[int, list[float]] = defaultdict(list)
    for vote in record.votes:
        if vote.member_id == exclude_member:
            continue
        by_member[vote.member_id].append(formula.weight(vote.emoji))
    score = sum(sum(ws) / len(ws) for ws in by_member.values())
    repliers = {r.member_id for r in record.replies if r.member_id != exclude_member}
    return score + formula.reply_weight * len(repliers)


def is_settled(created_at: float, now: float, formula: ScoreFormula) -> bool:
    """A post is settled (its score final enough to train on) once `settle_hours` have passed."""
    return now - created_at >= formula.settle_hours * 3600.0


def squash(score: float) -> float:
    """Signed log1p: compresses viral outliers, keeps the sign of net-negative posts."""
    return math.copysign(math.log1p(abs(score)), score)


def normalise_rewards(
    scores: Sequence[float],
    groups: Sequence[int],
    *,
    history: Mapping[int, Sequence[float]] | None = None,
    clip: float = REWARD_CLIP,
) -> list[float]:
    """Advantages: squash(score) minus the group's median, over a robust spread, clipped to ±clip.

    Groups are channels: a busy channel's posts are compared with its own recent posts, so it cannot drown a
    quiet one. `history` holds each group's recent settled scores (the trailing baseline); the scores being
    normalised join it. The spread is 1.4826·MAD (the normal-consistent median absolute deviation), falling back
    to the standard deviation and then to 1 when a channel's scores are nearly all equal.
    """
    if len(scores) != len(groups):
        raise ValueError("scores and groups differ in length")
    pools: dict[int, list[float]] = defaultdict(list)
    for g, values in (history or {}).items():
        pools[g].extend(squash(v) for v in values)
    for s, g in zip(scores, groups, strict=True):
        pools[g].append(squash(s))
    centre: dict[int, tuple[float, float]] = {}
    for g, pool in pools.items():
        med = statistics.median(pool)
        mad = statistics.median(abs(x - med) for x in pool) * 1.4826
        spread = mad if mad > 1e-6 else (statistics.pstdev(pool) if len(pool) > 1 else 0.0)
        centre[g] = (med, spread if spread > 1e-6 else 1.0)
    out = []
    for s, g in zip(scores, groups, strict=True):
        med, spread = centre[g]
        out.append(max(-clip, min(clip, (squash(s) - med) / spread)))
    return out


def formula_from_settings(settings: object) -> ScoreFormula:
    """Build the formula from a `ScoringSettings` section."""
    return ScoreFormula(
        emoji_weights=dict(settings.emoji_weights),  # type: ignore[attr-defined]
        default_emoji_weight=settings.default_emoji_weight,  # type: ignore[attr-defined]
        reply_weight=settings.reply_weight,  # type: ignore[attr-defined]
        settle_hours=settings.settle_hours,  # type: ignore[attr-defined]
    )
