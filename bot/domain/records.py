"""The rows storage hands out: small frozen dataclasses, so nothing above storage depends on the driver."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from bot.domain.scoring import Baseline

BASE = "base"  # the adapter name that means "no adapter": the base model alone
WEIGHTS = "adapter_model.safetensors"  # an adapter's weights file (PEFT's name); only safetensors ever load


@dataclass(frozen=True)
class NewPost:
    """What a generator produced and where it was posted."""

    channel_id: int
    text: str
    adapter: str
    created_at: float
    message_id: int | None = None
    guild_id: int | None = None
    kind: str = "post"
    prompt: str = ""
    prompt_ids: Sequence[int] = ()
    completion_ids: Sequence[int] = ()
    params: dict[str, Any] = field(default_factory=dict)
    trial_id: int | None = None  # set while an A/B trial runs: which trial, and which arm wrote the post
    arm: str | None = None

    @classmethod
    def from_sample(
        cls,
        sample: Any,
        *,
        channel_id: int,
        created_at: float,
        message_id: int | None = None,
        guild_id: int | None = None,
        kind: str = "post",
        text: str | None = None,
    ) -> NewPost:
        """The post for a generator `Sample`, keeping the exact ids and sampling settings it was drawn with.

        `text` overrides the sample's text when what was sent differs (a story answer without its speaker prefix).
        """
        return cls(
            channel_id=channel_id,
            text=sample.text if text is None else text,
            adapter=sample.adapter,
            created_at=created_at,
            message_id=message_id,
            guild_id=guild_id,
            kind=kind,
            prompt=sample.prompt,
            prompt_ids=tuple(sample.prompt_ids),
            completion_ids=tuple(sample.completion_ids),
            params=dict(sample.params),
        )


@dataclass(frozen=True)
class Post:
    id: int
    message_id: int | None
    channel_id: int
    guild_id: int | None
    kind: str
    text: str
    prompt: str
    prompt_ids: tuple[int, ...]
    completion_ids: tuple[int, ...]
    adapter: str
    params: dict[str, Any]
    created_at: float
    trained_at: float | None
    trained_run: int | None = None  # the run that claimed (and, once trained_at is set, trained on) this post
    trial_id: int | None = None
    arm: str | None = None


@dataclass(frozen=True)
class Vote:
    member_id: int
    emoji: str
    at: float


@dataclass(frozen=True)
class Reply:
    message_id: int
    member_id: int
    at: float


@dataclass(frozen=True)
class PostRecord:
    """A post with its current votes and replies: what scoring reads."""

    post: Post
    votes: tuple[Vote, ...]
    replies: tuple[Reply, ...]


@dataclass(frozen=True)
class TrainingRun:
    id: int
    reason: str
    status: str
    started_at: float
    finished_at: float | None
    adapter: str | None
    accepted: bool | None  # the gate's verdict; whether it then served is the stage ('promoted')
    message: str | None
    metrics: dict[str, Any]
    stage: str = "training"
    community: str | None = None  # the lineage it trained ("g123", "commons"); None: a run from before communities


@dataclass(frozen=True)
class StoryLine:
    seq: int
    speaker: str
    text: str
    member_id: int | None
    at: float


@dataclass(frozen=True)
class Story:
    id: int
    channel_id: int
    instruction: str
    opening: str
    started_at: float
    ended_at: float | None
    lines: tuple[StoryLine, ...]


@dataclass(frozen=True)
class Trial:
    """A live A/B trial of a candidate adapter against the incumbent (bot/trials/sequential.py)."""

    id: int
    candidate: str
    incumbent: str
    run_id: int | None
    share: float
    alpha: float
    max_posts: int
    seed: int
    baselines: dict[int, Baseline]  # each channel's, frozen when the trial started
    started_at: float
    ended_at: float | None
    verdict: str | None
    decided_by: str | None
    summary: str | None
    community: str | None = None  # the lineage whose adapters it compares; None: a trial from before communities

    @property
    def active(self) -> bool:
        """True until a verdict ends it."""
        return self.ended_at is None


@dataclass(frozen=True)
class RunResult:
    """What a training run did: `accepted` is the gate's verdict, `promoted` whether it now serves."""

    status: str  # done | skipped | failed
    run_id: int | None = None
    adapter: str | None = None
    parent: str | None = None
    accepted: bool = False
    promoted: bool = False
    reason: str = ""
    trial: bool = False  # accepted, and put on a live A/B trial against the serving adapter instead of served
    metrics: dict[str, float] = field(default_factory=dict)

    def as_event(self) -> dict[str, Any]:
        """The JSON-lines `done` event the worker prints."""
        return {"event": "done", **asdict(self)}

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> RunResult:
        """Parse the worker's `done` event."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in event.items() if k in names})
