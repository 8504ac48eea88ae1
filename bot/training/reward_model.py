"""A small reward model over all settled history: which words go with engagement, pooled across nights.

One night of a real community is too few reactions to say much about any single post: a post's score is a sum of
a few members' coin flips. Pooled over the trailing window, weak effects add up. The model is ridge regression of
each post's score (centred per channel) on the words it contains, with the ridge strength chosen by exact
leave-one-out error; its `signal` is the leave-one-out R² over the constant model, and its `p_value` how often
shuffled scores fit as well. A large p-value means the history cannot tell posts apart better than noise does:
rewards would be noise, and a night trains nothing.

Pure apart from torch's linear algebra (float64 on CPU); no model weights involved.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.domain.scoring import ScoreFormula, score_post
from bot.training.objective import repeat3

if TYPE_CHECKING:
    from bot.storage import PostRecord
    from bot.training.dataset import PolicySample

log = logging.getLogger(__name__)

REWARD_MODEL_FILE = "reward_model.json"  # beside the adapters: the nightly run writes it, the posting path reads it
_WORD = re.compile(r"[\w'-]+")
LAMBDAS = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)


def _length(text: str) -> float:
    return float(len(_WORD.findall(text)))


def features(text: str, *, bigrams: bool = False) -> set[str]:
    """The post's features: its lowercased words, and whether it asks a question or carries emoji; with `bigrams`,
    also each pair of adjacent words ("hot take"), chosen without looking at any audience's form: n-grams are what
    a phrase, a template or a turn of speech looks like to a bag-of-features model."""
    seq = _WORD.findall(text.lower())
    out = set(seq)
    if bigrams:
        out.update(f"{a} {b}" for a, b in itertools.pairwise(seq))
    if "?" in text:
        out.add("<question>")
    if any(ord(c) > 0x2000 for c in text):
        out.add("<emoji>")
    return out


@dataclass(frozen=True)
class RewardModel:
    """Predicted score of a text: bias plus the weights of the features it contains."""

    bias: float = 0.0
    weights: Mapping[str, float] = field(default_factory=dict)
    signal: float = 0.0  # leave-one-out R² over the constant model (≤ 0: no usable signal)
    ridge: float = 0.0  # the chosen ridge strength (0: not fitted)
    posts: int = 0
    mean_score: float = 0.0  # the pooled mean score, the unit of relative rewards
    p_value: float = 1.0  # chance that noise fits as well (permutation test); 1 when not fitted
    length_weight: float = 0.0  # score per word of length, fitted alongside the words so they are read at equal length
    mean_words: float = 0.0
    bigrams: bool = False  # features include adjacent word pairs (`features`)

    def predict(self, text: str, *, at_usual_length: bool = False) -> float:
        """The expected score of `text` (in score units); with `at_usual_length`, as if it had the pooled mean
        length, so that only what it says counts, not how long it goes on."""
        words = self.mean_words if at_usual_length else _length(text)
        total = self.bias + sum(self.weights.get(f, 0.0) for f in features(text, bigrams=self.bigrams))
        total += self.length_weight * words
        return total

    def relative(self, texts: Sequence[str], *, at_usual_length: bool = True) -> list[float]:
        """Predicted engagement of each text relative to the pooled mean: +0.3 is "30% more than usual".

        By default at the usual length: the words model credits long posts for holding more words, which is the
        length drift the rewards and the gate must not follow.
        """
        unit = max(self.mean_score, 1e-6)
        return [self.predict(t, at_usual_length=at_usual_length) / unit - 1.0 for t in texts]

    def top(self, k: int = 8) -> list[tuple[str, float]]:
        """The features with the largest weights, for logs and metadata."""
        return sorted(self.weights.items(), key=lambda kv: -kv[1])[:k]

    def scores(self, texts: Sequence[str]) -> list[float]:
        """Predicted scores of texts at the usual length: what best-of-N ranks candidates by. Not as written: a
        words model credits long posts for holding more words, and ranking on that made posts 70% longer and
        halved distinct-2 in 8 nights on `realistic` (the same length drift the rewards and the gate refuse)."""
        return [self.predict(t, at_usual_length=True) for t in texts]

    def as_json(self) -> dict[str, Any]:
        """The model as plain JSON (weights rounded: a few hundred words, a few kB)."""
        data = asdict(self)
        data["weights"] = {w: round(v, 6) for w, v in self.weights.items()}
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RewardModel:
        """The inverse of `as_json`; unknown keys are ignored."""
        known = {f for f in cls.__dataclass_fields__}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["weights"] = {str(w): float(v) for w, v in dict(kwargs.get("weights", {})).items()}
        return cls(**kwargs)


def save_reward_model(model: RewardModel, path: Path) -> None:
    """Write the model atomically (temp file, then rename): the posting path never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(model.as_json()), encoding="utf-8")
    os.replace(tmp, path)


class RewardModelFile:
    """The latest nightly reward model, as the posting path sees it: reread (off the event loop) when the file
    changes; None while there is none, or while the latest fit predicts no better than the constant out of sample
    (leave-one-out R² ≤ 0). A weak fit still ranks: training waits for a significant one (KILROY_REWARD_MAX_P),
    but a pick among N fresh samples costs nothing when the model is merely noisy."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int] | None = None
        self._model: RewardModel | None = None

    async def current(self) -> RewardModel | None:
        """The usable model, or None."""
        try:
            st = self.path.stat()
        except OSError:
            return None
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            try:
                text = await asyncio.to_thread(self.path.read_text, encoding="utf-8")
                self._model = RewardModel.from_json(json.loads(text))
            except (OSError, ValueError, TypeError):
                log.warning("cannot read the reward model at %s; posting without reranking", self.path, exc_info=True)
                self._model = None
            self._stamp = stamp
        if self._model is None or self._model.signal <= 0 or not self._model.weights:
            return None
        return self._model


def fit_reward_model(
    texts: Sequence[str],
    scores: Sequence[float],
    groups: Sequence[int] | None = None,
    *,
    min_count: int = 2,
    permutations: int = 99,
    bigrams: bool = False,
) -> RewardModel:
    """Ridge regression of channel-centred scores on word presence (and adjacent word pairs, with `bigrams`) and
    length; ridge strength by exact leave-one-out error.

    Words seen in fewer than `min_count` posts are dropped (a single post says nothing about its words). The fit's
    p-value is a permutation test: the share of `permutations` shuffles of the scores whose best leave-one-out R²
    reaches the real one (pure noise gives a uniform p-value; real preferences a small one).
    """
    import torch

    n = len(texts)
    if n != len(scores) or (groups is not None and len(groups) != n):
        raise ValueError("texts, scores and groups differ in length")
    if n < 4:
        return RewardModel(posts=n, mean_score=sum(scores) / max(1, n))
    groups = list(groups) if groups is not None else [0] * n
    by_group: dict[int, list[float]] = {}
    for s, g in zip(scores, groups, strict=True):
        by_group.setdefault(g, []).append(s)
    centre = {g: sum(v) / len(v) for g, v in by_group.items()}
    mean_score = sum(scores) / n
    y = torch.tensor([s - centre[g] for s, g in zip(scores, groups, strict=True)], dtype=torch.float64)

    feats = [features(t, bigrams=bigrams) for t in texts]
    counts: dict[str, int] = {}
    for f in feats:
        for w in f:
            counts[w] = counts.get(w, 0) + 1
    vocab = sorted(w for w, c in counts.items() if min_count <= c < n)
    if not vocab:
        return RewardModel(bias=mean_score, posts=n, mean_score=mean_score)
    index = {w: i for i, w in enumerate(vocab)}
    # the words present, and the length in words (per 10, on the words' scale) as its own last column
    x = torch.zeros((n, len(vocab) + 1), dtype=torch.float64)
    for i, f in enumerate(feats):
        for w in f:
            if w in index:
                x[i, index[w]] = 1.0
        x[i, -1] = _length(texts[i]) / 10.0
    x_mean = x.mean(0)
    xc = x - x_mean
    evals, evecs = torch.linalg.eigh(xc @ xc.T)  # kernel K = U diag(evals) U^T
    evals = evals.clamp(min=0)
    # each channel's mean is a fitted intercept: its leverage 1/n_g joins every hat diagonal, and the constant
    # model's exact leave-one-out error is its residual scaled by n_g/(n_g-1)
    lev0 = torch.tensor([1.0 / len(by_group[g]) for g in groups], dtype=torch.float64).clamp(max=0.5)
    shrinks = [evals / (evals + lam) for lam in LAMBDAS]
    hats = [(lev0 + evecs**2 @ sh).clamp(max=1 - 1e-9) for sh in shrinks]

    def loo_r2(target: torch.Tensor) -> tuple[float, float]:
        """(best leave-one-out R² over the ridge grid, its ridge strength) for these targets."""
        base = float((target / (1 - lev0)).pow(2).sum())
        uty = evecs.T @ target
        loo, lam = min(
            (float((((target - evecs @ (sh * uty)) / (1 - hat)) ** 2).sum()), lam)
            for sh, hat, lam in zip(shrinks, hats, LAMBDAS, strict=True)
        )
        return (1.0 - loo / base if base > 0 else 0.0), lam

    signal, lam = loo_r2(y)
    # the same search on shuffled scores: how good a fit pure noise gets here, ridge choice included
    gen = torch.Generator().manual_seed(n)
    null = [loo_r2(y[torch.randperm(n, generator=gen)])[0] for _ in range(permutations)]
    p_value = (1 + sum(v >= signal for v in null)) / (1 + len(null))
    uty = evecs.T @ y
    alpha = evecs @ (uty / (evals + lam))  # dual coefficients: (K + λI)^-1 y
    beta = xc.T @ alpha
    weights = {w: float(b) for w, b in zip(vocab, beta[:-1].tolist(), strict=True)}
    bias = mean_score - float(beta @ x_mean)
    mean_words = float(x_mean[-1]) * 10.0
    return RewardModel(
        bias, weights, signal, lam, n, mean_score, p_value, float(beta[-1]) / 10.0, mean_words, bigrams=bigrams
    )


def model_rewards(
    records: Sequence[PostRecord],
    fresh: Sequence[PolicySample],
    formula: ScoreFormula,
    *,
    length_neutral: float = 1.0,
    repeat_penalty: float = 0.0,
) -> tuple[RewardModel, list[float]]:
    """Fit the reward model on every settled record (the trailing window, trained or not) and reward each fresh
    draw of the policy (a post, or a best-of-N candidate) with its estimated engagement relative to the pooled
    mean, centred on the fresh draws' mean.

    Longer posts hold more words, so a words model tends to favour them, and training on that makes posts long and
    repetitive. `length_neutral` (0..1) removes that share of the rewards' positive linear dependence on the
    post's length in tokens; `repeat_penalty` is subtracted from posts that repeat a word trigram.
    """
    model = fit_reward_model(
        [r.post.text for r in records],
        [score_post(r, formula) for r in records],
        [r.post.channel_id for r in records],
    )
    rewards = shape_rewards(
        model.relative([d.text for d in fresh]),
        [float(len(d.completion_ids)) for d in fresh],
        [repeat3([d.text]) for d in fresh],
        length_neutral=length_neutral,
        repeat_penalty=repeat_penalty,
    )
    return model, rewards


def shape_rewards(
    estimates: Sequence[float],
    lengths: Sequence[float],
    repeats: Sequence[float],
    *,
    length_neutral: float = 1.0,
    repeat_penalty: float = 0.0,
) -> list[float]:
    """Centred rewards from estimated relative engagement, with the length and repetition terms (see above)."""
    n = len(estimates)
    if n == 0:
        return []
    rewards = [e - repeat_penalty * r for e, r in zip(estimates, repeats, strict=True)]
    mean = sum(rewards) / n
    rewards = [x - mean for x in rewards]
    mean_len = sum(lengths) / n
    var = sum((x - mean_len) ** 2 for x in lengths) / n
    if var > 0 and length_neutral > 0:
        slope = sum(r * (x - mean_len) for r, x in zip(rewards, lengths, strict=True)) / n / var
        if slope > 0:  # only a preference for length is removed; a preference for brevity stays
            rewards = [r - length_neutral * slope * (x - mean_len) for r, x in zip(rewards, lengths, strict=True)]
    return rewards
