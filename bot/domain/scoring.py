"""Pure scoring: stored engagement -> one score per post -> normalised rewards.

Rules: only unique human members count; bots and the bot itself never reach the votes table; a removed
reaction is a removed vote. One vote per member per post: a member who reacts with several emoji contributes the
mean of their weights, so piling emoji on a post cannot outvote other members. A member who replies adds
`reply_weight` once, however many replies they write.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.config.settings import ScoreFormula

if TYPE_CHECKING:
    from bot.storage import PostRecord

__all__ = ["REWARD_CLIP", "Baseline", "ScoreFormula", "normalise_rewards", "score_post", "squash"]

REWARD_CLIP = 2.5


def score_post(record: PostRecord, formula: ScoreFormula) -> float:
    """The post's score: sum over unique human members of their vote, plus reply weight per replying member."""
    by_member: dict[int, list[float]] = defaultdict(list)
    for vote in record.votes:
        by_member[vote.member_id].append(formula.weight(vote.emoji))
    score = sum(sum(ws) / len(ws) for ws in by_member.values())
    repliers = {r.member_id for r in record.replies}
    return score + formula.reply_weight * len(repliers)


def squash(score: float) -> float:
    """Signed log1p: compresses viral outliers, keeps the sign of net-negative posts."""
    return math.copysign(math.log1p(abs(score)), score)


@dataclass(frozen=True)
class Baseline:
    """A channel's reward centre and robust spread, over the squashed scores of its settled posts.

    The spread is 1.4826·MAD (the normal-consistent median absolute deviation), falling back to the standard
    deviation and then to 1 when a channel's scores are nearly all equal. A trial freezes its channels' baselines
    when it starts, so a post's reward never changes.
    """

    median: float = 0.0
    spread: float = 1.0

    @classmethod
    def of(cls, scores: Iterable[float]) -> Baseline:
        """The baseline of a non-empty pool of scores."""
        pool = [squash(s) for s in scores]
        med = statistics.median(pool)
        mad = statistics.median(abs(x - med) for x in pool) * 1.4826
        spread = mad if mad > 1e-6 else (statistics.pstdev(pool) if len(pool) > 1 else 0.0)
        return cls(med, spread if spread > 1e-6 else 1.0)

    def reward(self, score: float, clip: float = REWARD_CLIP) -> float:
        """squash(score) against this baseline, over its spread, clipped to ±clip."""
        return max(-clip, min(clip, (squash(score) - self.median) / self.spread))


def normalise_rewards(
    scores: Sequence[float],
    groups: Sequence[int],
    *,
    history: Mapping[int, Sequence[float]] | None = None,
    clip: float = REWARD_CLIP,
) -> list[float]:
    """Advantages: squash(score) minus the group's median, over a robust spread, clipped to ±clip (`Baseline`).

    Groups are channels: a busy channel's posts are compared with its own recent posts, so it cannot drown a
    quiet one. `history` holds each group's recent settled scores (the trailing baseline); the scores being
    normalised join it.
    """
    if len(scores) != len(groups):
        raise ValueError("scores and groups differ in length")
    pools: dict[int, list[float]] = defaultdict(list)
    for g, values in (history or {}).items():
        pools[g].extend(values)
    for s, g in zip(scores, groups, strict=True):
        pools[g].append(s)
    centre = {g: Baseline.of(pool) for g, pool in pools.items()}
    return [centre[g].reward(s, clip) for s, g in zip(scores, groups, strict=True)]
