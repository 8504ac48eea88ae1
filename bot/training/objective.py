"""The loss math: small pure tensor functions, unit-tested on hand-made tensors."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor

IGNORE = -100
_WORD = re.compile(r"[\w'-]+")


def token_logprobs(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Log-probability of each label token under the logits, and the mask of positions that count.

    logits: (B, T, V) from a causal LM over input ids (B, T); labels: (B, T) with IGNORE on prompt and padding.
    Returns (logp, mask), both (B, T-1): position t scores token t+1.
    """
    import torch

    logits = logits[:, :-1, :].float()
    targets = labels[:, 1:]
    mask = targets != IGNORE
    safe = targets.clamp(min=0)
    logp = torch.log_softmax(logits, dim=-1).gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    return logp * mask, mask


def kl_per_sequence(logp: Tensor, ref_logp: Tensor, mask: Tensor) -> Tensor:
    """Mean per-token KL(policy || reference) on the sampled tokens, per sequence: (B,).

    Uses the non-negative, low-variance estimator k3 = exp(r) - r - 1 with r = ref_logp - logp (Schulman 2020).
    """
    import torch

    r = (ref_logp - logp) * mask
    k3 = (torch.exp(r) - r - 1.0) * mask
    return k3.sum(-1) / mask.sum(-1).clamp(min=1)


def awr_weights(advantages: Tensor, temperature: float, cap: float = 20.0) -> Tensor:
    """Advantage-weighted-regression weights exp(A/τ), capped, normalised to mean 1: (B,)."""
    import torch

    w = torch.exp(advantages / temperature).clamp(max=cap)
    return w / w.mean().clamp(min=1e-8)


def reward_weighted_loss(
    seq_logp: Tensor,
    advantages: Tensor,
    kl: Tensor,
    beta: float,
    *,
    objective: str = "reinforce",
    awr_temperature: float = 1.0,
) -> Tensor:
    """Policy loss with a KL anchor to the base model.

    seq_logp: (B,) summed log-prob of each post's sampled tokens (divided by a batch constant by the caller);
    advantages: (B,) normalised rewards, centred per channel, so a post at its channel's usual engagement
    contributes ~0 and only relative engagement moves the policy; kl: (B,) per-token KL to the base.
    - reinforce: signed policy gradient, -A·logp. Pushes liked posts up and disliked posts down.
    - awr: advantage-weighted likelihood, -exp(A/τ)·logp. Never pushes anything down; a softer, SFT-like update.
    """
    if objective == "reinforce":
        pg = -(advantages * seq_logp).mean()
    elif objective == "awr":
        pg = -(awr_weights(advantages, awr_temperature) * seq_logp).mean()
    else:
        raise ValueError(f"unknown objective {objective!r}")
    # the KL to the fixed base keeps the adapter from drifting into degenerate text that games the audience
    return pg + beta * kl.mean()


def repeated_ngram_positions(tokens: Sequence[int], n: int = 3) -> list[int]:
    """Indexes of the tokens that complete an n-gram already seen earlier in the same sequence."""
    seen: set[tuple[int, ...]] = set()
    out = []
    for i in range(n - 1, len(tokens)):
        gram = tuple(tokens[i - n + 1 : i + 1])
        if gram in seen:
            out.append(i)
        seen.add(gram)
    return out


def unlikelihood_loss(logp: Tensor, marked: Tensor) -> Tensor:
    """Unlikelihood (Welleck et al. 2019) on marked positions: mean of -log(1 - p(token)), 0 if none is marked.

    logp: (B, T) log-probabilities of the sampled tokens; marked: (B, T) 1 where the token repeats an n-gram.
    Pushes down exactly the tokens that loop a post back onto itself, without touching the rest.
    """
    import torch

    p = torch.exp(logp).clamp(max=1 - 1e-6)
    return -(torch.log1p(-p) * marked).sum() / marked.sum().clamp(min=1)


def distinct_n(texts: list[Any], n: int = 2) -> float:
    """Distinct-n: unique n-grams over all n-grams of a batch of texts (whitespace tokens). 0 for none."""
    grams: list[tuple[str, ...]] = []
    for text in texts:
        words = str(text).split()
        grams.extend(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    return len(set(grams)) / len(grams) if grams else 0.0


def repeat3(texts: Sequence[str]) -> float:
    """The share of texts that contain some word trigram twice: the mark of a post looping on a template."""
    if not texts:
        return 0.0
    hits = 0
    for text in texts:
        words = _WORD.findall(str(text).lower())
        grams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
        hits += len(grams) != len(set(grams))
    return hits / len(texts)
