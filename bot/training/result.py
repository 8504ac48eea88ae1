"""What a training run hands across its boundaries, typed: the candidate's evaluation (the gate's input) and the
progress events, with the one codec that carries them over the worker process's stdout as JSON lines."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal

from bot.domain.records import RunResult

__all__ = ["ArmMetrics", "Evaluation", "Progress", "RunResult"]


@dataclass(frozen=True)
class ArmMetrics:
    """One model's fresh samples, drawn with the gate's seed: how diverse, repetitive and long they are."""

    distinct2: float  # distinct word bigrams over all bigrams
    repeat3: float  # share of samples that repeat a word trigram of their own
    mean_tokens: float
    engagement: float | None = None  # the reward model's estimated relative engagement (None without one)


@dataclass(frozen=True)
class Evaluation:
    """The candidate against the serving adapter and the base, on the same draw: what the gate decides on."""

    kl: float  # mean per-token KL(candidate || base) on the candidate's samples, in nats
    candidate: ArmMetrics
    serving: ArmMetrics  # the base itself when nothing serves yet
    base: ArmMetrics

    def as_metrics(self) -> dict[str, float]:
        """The flat form stored in meta.json and training_runs.metrics: the candidate's figures unprefixed, the
        others' prefixed `serving_` and `base_`."""
        arms = (("", self.candidate), ("serving_", self.serving), ("base_", self.base))
        out = {"kl": self.kl}
        for prefix, arm in arms:
            out[f"{prefix}distinct2"] = arm.distinct2
            out[f"{prefix}repeat3"] = arm.repeat3
            if arm.engagement is not None:
                out[f"{prefix}engagement"] = arm.engagement
        for prefix, arm in arms:
            out[f"{prefix}mean_tokens"] = arm.mean_tokens
        return out


ProgressKind = Literal["settings", "start", "progress", "skipped", "done", "error"]


@dataclass(frozen=True)
class Progress:
    """One event of a training run, in the order they come: `settings` (the worker echoes what it runs with),
    `start`, `progress` (stage `train` per step, then `evaluate`), and last `skipped`, `done` or (worker) `error`.
    A field that an event does not carry is None."""

    kind: ProgressKind
    stage: str | None = None  # progress: train | evaluate
    step: int | None = None
    of: int | None = None
    epoch: int | None = None
    loss: float | None = None
    run_id: int | None = None  # start
    posts: int | None = None
    examples: int | None = None  # start: training examples (a best-of-N post brings all its candidates)
    parent: str | None = None
    reason: str | None = None  # skipped
    message: str | None = None  # error
    settings: dict[str, Any] | None = None  # settings
    result: RunResult | None = None  # done

    def to_json(self) -> dict[str, Any]:
        """The JSON line's object: {"event": kind, ...the fields it carries}; `done` carries the RunResult's fields."""
        if self.kind == "done" and self.result is not None:
            return self.result.as_event()
        out: dict[str, Any] = {"event": self.kind}
        for f in fields(self)[1:]:
            value = getattr(self, f.name)
            if value is not None and f.name != "result":
                out[f.name] = value
        return out

    @classmethod
    def from_json(cls, event: dict[str, Any]) -> Progress:
        """Parse a JSON line's object (unknown keys ignored)."""
        kind = event.get("event")
        if kind == "done":
            return cls("done", result=RunResult.from_event(event))
        names = {f.name for f in fields(cls)} - {"kind", "result"}
        return cls(kind, **{k: v for k, v in event.items() if k in names})  # type: ignore[arg-type]
