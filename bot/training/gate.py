"""The evaluation gate: a pure decision on a candidate's `Evaluation` before it may serve."""

from __future__ import annotations

import math
from dataclasses import dataclass

from bot.config.settings import TrainingSettings
from bot.training.result import Evaluation

_T = TrainingSettings  # the class, not an instance: a declared field's class attribute is its default

REPEAT_FLOOR = 0.03  # repeat3 bounds are relative to max(base repeat3, this): a few repeats in the samples are noise


@dataclass(frozen=True)
class GateConfig:
    """The gate's bounds; the defaults are the settings' (`KILROY_GATE_*`), declared once in bot/config/settings.py."""

    max_kl: float = _T.gate_max_kl  # mean per-token KL(candidate || base) on fresh samples, in nats
    min_diversity: float = _T.gate_min_diversity  # candidate distinct-2 at least this fraction of the serving one's
    min_base_diversity: float = _T.gate_min_base_diversity  # ... and of the base's, so nightly losses cannot compound
    max_repeat: float = _T.gate_max_repeat  # candidate repeat3 at most this times the base's (floored)
    max_length: float = _T.gate_max_length  # candidate mean tokens at most this times the base's
    min_engagement: float = _T.gate_min_engagement  # estimated engagement of candidate minus serving, at least


@dataclass(frozen=True)
class Decision:
    """The gate's verdict: an accepted candidate may be served (or tried); a refused one never is."""

    accepted: bool
    reason: str


def decide(evaluation: Evaluation, cfg: GateConfig, *, loss: float = 0.0) -> Decision:
    """Accept only if the candidate stays close to the base, keeps its diversity, does not degenerate into
    repetitive or long posts, and is not estimated to engage less than the serving adapter.

    `loss` is the training's mean loss (a non-finite one means training diverged). The engagement check runs only
    when both the candidate and the serving adapter have a reward model's estimate.
    """
    kl, cand, serving, base = evaluation.kl, evaluation.candidate, evaluation.serving, evaluation.base
    d2 = cand.distinct2
    if not math.isfinite(loss) or not math.isfinite(kl):
        return Decision(False, f"training diverged (loss={loss}, kl={kl})")
    if kl > cfg.max_kl:
        return Decision(False, f"KL to base {kl:.3f} exceeds the bound {cfg.max_kl:.3f}")
    floor = cfg.min_diversity * serving.distinct2
    if d2 < floor:
        return Decision(
            False,
            f"distinct-2 {d2:.3f} fell below {floor:.3f} ({cfg.min_diversity:.0%} of the serving adapter's "
            f"{serving.distinct2:.3f})",
        )
    base_floor = cfg.min_base_diversity * base.distinct2
    if d2 < base_floor:
        return Decision(
            False,
            f"distinct-2 {d2:.3f} fell below {base_floor:.3f} ({cfg.min_base_diversity:.0%} of the base model's "
            f"{base.distinct2:.3f})",
        )
    bound = cfg.max_repeat * max(base.repeat3, REPEAT_FLOOR)
    if cand.repeat3 > bound:
        return Decision(False, f"repeat3 {cand.repeat3:.2f} exceeds {cfg.max_repeat:.1f}x the base's ({bound:.2f})")
    bound = cfg.max_length * base.mean_tokens
    if cand.mean_tokens > bound:
        return Decision(
            False,
            f"mean length {cand.mean_tokens:.1f} tokens exceeds {cfg.max_length:.1f}x the base's ({bound:.1f})",
        )
    gain = None
    if cand.engagement is not None and serving.engagement is not None:
        gain = cand.engagement - serving.engagement
        if gain < cfg.min_engagement:
            return Decision(
                False,
                f"estimated engagement {gain:+.1%} against the serving adapter (needs at least "
                f"{cfg.min_engagement:+.1%})",
            )
    floor = max(floor, base_floor)
    reason = f"KL {kl:.3f} ≤ {cfg.max_kl:.3f} and distinct-2 {d2:.3f} ≥ {floor:.3f}"
    if gain is not None:
        reason += f"; estimated engagement {gain:+.1%} over serving"
    return Decision(True, reason)


def gate_config(training: TrainingSettings) -> GateConfig:
    """The gate's bounds from a `TrainingSettings` section."""
    return GateConfig(
        max_kl=training.gate_max_kl,
        min_diversity=training.gate_min_diversity,
        min_base_diversity=training.gate_min_base_diversity,
        max_repeat=training.gate_max_repeat,
        max_length=training.gate_max_length,
        min_engagement=training.gate_min_engagement,
    )
