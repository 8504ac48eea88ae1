"""The evaluation gate: pure decision on a candidate adapter's metrics before promotion."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from bot.config.settings import TrainingSettings

_T = TrainingSettings()  # the defaults, for GateConfig's own

REPEAT_FLOOR = 0.03  # repeat3 bounds are relative to max(base repeat3, this): a few repeats in the samples are noise


@dataclass(frozen=True)
class GateConfig:
    """The gate's bounds; the defaults are the settings' (`KILROY_GATE_*`), written once in bot/config/settings.py."""

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


def decide(candidate: Mapping[str, float], serving: Mapping[str, float], cfg: GateConfig) -> Decision:
    """Promote only if the candidate stays close to the base, keeps its diversity, does not degenerate into
    repetitive or long posts, and is not estimated to engage less than the serving adapter.

    candidate: {"kl", "distinct2", "loss"} and optionally "base_distinct2", "repeat3" with "base_repeat3",
    "mean_tokens" with "base_mean_tokens", and "engagement" (the reward model's estimate on fresh samples);
    serving: {"distinct2"} and optionally "engagement" (the serving adapter's estimate on the same draw).
    A check whose inputs are missing is skipped.
    """
    kl, d2, loss = candidate.get("kl", math.nan), candidate.get("distinct2", 0.0), candidate.get("loss", 0.0)
    if not math.isfinite(loss) or not math.isfinite(kl):
        return Decision(False, f"training diverged (loss={loss}, kl={kl})")
    if kl > cfg.max_kl:
        return Decision(False, f"KL to base {kl:.3f} exceeds the bound {cfg.max_kl:.3f}")
    floor = cfg.min_diversity * serving.get("distinct2", 0.0)
    if d2 < floor:
        return Decision(
            False,
            f"distinct-2 {d2:.3f} fell below {floor:.3f} ({cfg.min_diversity:.0%} of the serving adapter's "
            f"{serving.get('distinct2', 0.0):.3f})",
        )
    base_floor = cfg.min_base_diversity * candidate.get("base_distinct2", 0.0)
    if d2 < base_floor:
        return Decision(
            False,
            f"distinct-2 {d2:.3f} fell below {base_floor:.3f} ({cfg.min_base_diversity:.0%} of the base model's "
            f"{candidate.get('base_distinct2', 0.0):.3f})",
        )
    if "repeat3" in candidate and "base_repeat3" in candidate:
        bound = cfg.max_repeat * max(candidate["base_repeat3"], REPEAT_FLOOR)
        if candidate["repeat3"] > bound:
            return Decision(
                False, f"repeat3 {candidate['repeat3']:.2f} exceeds {cfg.max_repeat:.1f}x the base's ({bound:.2f})"
            )
    if "mean_tokens" in candidate and "base_mean_tokens" in candidate:
        bound = cfg.max_length * candidate["base_mean_tokens"]
        if candidate["mean_tokens"] > bound:
            return Decision(
                False,
                f"mean length {candidate['mean_tokens']:.1f} tokens exceeds {cfg.max_length:.1f}x the base's "
                f"({bound:.1f})",
            )
    if "engagement" in candidate and "engagement" in serving:
        gain = candidate["engagement"] - serving["engagement"]
        if gain < cfg.min_engagement:
            return Decision(
                False,
                f"estimated engagement {gain:+.1%} against the serving adapter (needs at least "
                f"{cfg.min_engagement:+.1%})",
            )
    floor = max(floor, base_floor)
    reason = f"KL {kl:.3f} ≤ {cfg.max_kl:.3f} and distinct-2 {d2:.3f} ≥ {floor:.3f}"
    if "engagement" in candidate and "engagement" in serving:
        reason += f"; estimated engagement {candidate['engagement'] - serving['engagement']:+.1%} over serving"
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
