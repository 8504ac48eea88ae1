"""Pure: settled post records and their rewards -> training examples."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.storage import PostRecord


@dataclass(frozen=True)
class TrainingExample:
    """One post as the trainer sees it: the exact ids it was sampled as, and its advantage."""

    post_id: int
    prompt_ids: tuple[int, ...]
    completion_ids: tuple[int, ...]
    reward: float


def build_examples(records: Sequence[PostRecord], rewards: Sequence[float]) -> list[TrainingExample]:
    """One example per post that kept its sampled token ids; posts without them (legacy rows) are skipped."""
    if len(records) != len(rewards):
        raise ValueError("records and rewards differ in length")
    out = []
    for record, reward in zip(records, rewards, strict=True):
        post = record.post
        if not post.completion_ids or not post.prompt_ids:
            continue
        out.append(TrainingExample(post.id, tuple(post.prompt_ids), tuple(post.completion_ids), float(reward)))
    return out
