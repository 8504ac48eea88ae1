"""Pure: settled post records and their rewards -> training examples."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.storage import PostCandidate, PostRecord


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


@dataclass(frozen=True)
class PolicySample:
    """A draw of the policy to train on: a post as sent, or one of the candidates of a best-of-N post."""

    post_id: int
    prompt_ids: tuple[int, ...]
    completion_ids: tuple[int, ...]
    text: str


def policy_samples(
    records: Sequence[PostRecord], candidates: Mapping[int, Sequence[PostCandidate]]
) -> list[PolicySample]:
    """What the policy drew for these posts, each draw once.

    A best-of-N post was picked by the reward model, so it is not a sample of the policy: a REINFORCE step on the
    sent posts alone would be biased towards whatever the reward model already likes. Its N candidates are plain,
    independent draws, so training on all of them (each rewarded by the reward model's estimate, the sent one
    included) is an unbiased policy-gradient step. Posts without candidates (best-of-1, legacy rows) stand for
    themselves. Draws without token ids are skipped.
    """
    out = []
    for record in records:
        post = record.post
        if not post.prompt_ids:
            continue
        drawn = candidates.get(post.id) or ()
        if len(drawn) > 1:
            out += [
                PolicySample(post.id, tuple(post.prompt_ids), tuple(c.completion_ids), c.text)
                for c in drawn
                if c.completion_ids
            ]
        elif post.completion_ids:
            out.append(PolicySample(post.id, tuple(post.prompt_ids), tuple(post.completion_ids), post.text))
    return out
