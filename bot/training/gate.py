"""The evaluation gate: pure decision on a candidate adapter's metrics before promotion."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class GateConfig:
    max_kl: float = 1.0  # mean per-token KL(candidate || base) on fresh samples, in nats
    min_diversity: float = 0.6  # candidate distinct-2 must be at least this fraction of the serving adapter's
    min_base_diversity: float = 0.7  # ... and of the base model's, so small nightly losses cannot compound


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def decide(candidate: Mapping[str, float], serving: Mapping[str, float], cfg: GateConfig) -> Decision:
    """Promote only if the candidate stays close to the base and keeps its diversity.

    candidate: {"kl": float, "distinct2": float, "loss": float, "base_distinct2": float (optional)};
    serving: {"distinct2": float}.
    """
    kl, d2, loss = candidate.get("kl", math.nan), candidate.get("distinct2", 0.0), candidate.get("loss", 0.0)
    if not math.isfinite(loss) or not math.isfinite(kl):
        return Decision(False, f"training diverged (loss={loss}, kl={kl})")
    if kl > cfg.max_kl:
        return Decision(False, f"KL to base {kl:.3f} exceeds the bound {cfg.max_kl:.3f}")
    floor = cfg.min_diversity * serving.get("distinct2", 0.0)
    if d2 < floor:
        return Decision(
            False, f"distinct-2 {d2:.3f} fell below {cfg.min_diversity:.0%} of the serving adapter's ({floor:.3f})"
        )
    base_floor = cfg.min_base_diversity * candidate.get("base_distinct2", 0.0)
    if d2 < base_floor:
        return Decision(
            False, f"distinct-2 {d2:.3f} fell below {cfg.min_base_diversity:.0%} of the base model's ({base_floor:.3f})"
        )
    floor = max(floor, base_floor)
    return Decision(True, f"KL {kl:.3f} ≤ {cfg.max_kl:.3f} and distinct-2 {d2:.3f} ≥ {floor:.3f}")
