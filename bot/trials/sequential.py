"""Online A/B trials of adapters: the arm of each post, and an always-valid sequential test on settled rewards.

A candidate that passes the offline gate does not replace the serving adapter (the incumbent) at once: each post
is written by the candidate with probability `share` and by the incumbent otherwise, and the community's settled
reactions decide.

The test (a betting e-process on inverse-propensity-weighted rewards)
-------------------------------------------------------------------------
Post t gets arm A_t = 1 (candidate) with probability p = `share`, by a coin independent of everything before it,
and, once settled, a reward R_t in [-c, c] (the channel-normalised reward, clipped; `TrialReward`). With m_{t-1} the
mean reward of the posts settled before it (any number fixed before post t's coin would do), let

    Z_t = (R_t - m_{t-1}) · (A_t / p - (1 - A_t) / (1 - p))

Because the coin is fair to both arms and independent of the past, E[Z_t | past] = μ_cand,t - μ_inc,t exactly: the
difference of the two arms' mean rewards at that moment, whatever the community did before (its mood may drift,
the reaction rate may change with the hour; both arms see the same drift). Subtracting m_{t-1} changes no
expectation (E[A_t/p - (1-A_t)/(1-p)] = 0) but removes the rewards' common level from the variance: with it, Z has
the variance of the two-sample difference of means.

Two wealth processes bet on the sign of the difference:

    K⁺_t = Π_{i≤t} (1 + λ⁺_i Z_i)      (candidate better)      K⁻_t = Π_{i≤t} (1 - λ⁻_i Z_i)      (candidate worse)

with bets λ fixed before post i (aGRAPA, Waudby-Smith & Ramdas 2024: running mean of Z over its running second
moment, shrunk towards 0 by a prior of `PRIOR_POSTS` posts) and capped at half of 1/max|Z_i|, so every factor
stays positive. If the candidate is no better (μ_cand,t ≤ μ_inc,t at every t), each factor has expectation ≤ 1
given the past and K⁺ is a nonnegative supermartingale starting at 1. Ville's inequality then gives

    P(K⁺_t ≥ 1/α for some t ≥ 1) ≤ α,

over the whole infinite sequence, not one fixed sample size. That is why the decision may be checked after every
settled post (and the trial stopped at the first crossing, or at any time for any other reason) without inflating
the false-promotion rate: peeking is already priced in. A fixed-n t-test checked after every post would promote a
no-better candidate far more often than α. The same argument for K⁻ bounds by α the chance of ending a truly
better candidate as "worse". Nothing assumes normal, identically distributed or even stationary rewards, only
bounded ones and the coin: it is exact, not asymptotic.

Decisions: `promote` when K⁺ ≥ 1/α; `keep` (candidate worse) when K⁻ ≥ 1/α; `futile` (keep the incumbent) after
`max_posts` settled posts without either. The futility stop can only lower both error rates. `estimate` and
`bound` are for people: the difference of the arms' mean rewards and a time-uniform (asymptotic, normal-mixture)
confidence sequence around the IPW estimate (Waudby-Smith et al. 2023, "Time-uniform central limit theory").
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from bot.domain.scoring import REWARD_CLIP, Baseline

Arm = Literal["incumbent", "candidate"]
INCUMBENT: Arm = "incumbent"
CANDIDATE: Arm = "candidate"
ARMS: tuple[Arm, Arm] = (INCUMBENT, CANDIDATE)

# Verdicts. `promote`, `keep` and `futile` come from the test; the others from people or the training loop.
Verdict = Literal["promote", "keep", "futile", "stopped", "promoted_by_hand", "replaced"]
VERDICT_TEXT: dict[str, str] = {
    "promote": "the candidate engages better: promoted",
    "keep": "the candidate engages worse: the incumbent stays",
    "futile": "no difference found within the post budget: the incumbent stays",
    "stopped": "stopped by an operator: the incumbent stays",
    "promoted_by_hand": "promoted by an operator",
    "replaced": "replaced by a newer candidate: the incumbent stays",
}
PROMOTING: frozenset[str] = frozenset({"promote", "promoted_by_hand"})

PRIOR_POSTS = 20.0  # aGRAPA shrinkage: the bet starts at 0 and grows as evidence accumulates
BET_CAP = 0.5  # bet at most half of what would make a factor hit zero
CS_RHO_POSTS = 1000.0  # the confidence sequence is tightest around this many settled posts


@dataclass(frozen=True)
class TrialConfig:
    """The settings of a trial: share of posts to the candidate, false-promotion rate, post budget, reward clip."""

    share: float = 0.5
    alpha: float = 0.05
    max_posts: int = 5000
    clip: float = REWARD_CLIP

    def __post_init__(self) -> None:
        if not 0.0 < self.share < 1.0:
            raise ValueError("share must be strictly between 0 and 1")
        if not 0.0 < self.alpha < 1.0:
            raise ValueError("alpha must be strictly between 0 and 1")
        if self.max_posts < 1:
            raise ValueError("max_posts must be at least 1")


def assign_arm(seed: int, index: int, share: float) -> Arm:
    """The arm of a trial's `index`-th post: the candidate with probability `share`.

    Deterministic in (seed, index), so the draw is reproducible and a restart does not re-roll a post; the seed is
    stored with the trial and the arm with each post.
    """
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8, person=b"kilroy-ab").digest()
    draw = int.from_bytes(digest, "big") / 2.0**64  # uniform in [0, 1)
    return CANDIDATE if draw < share else INCUMBENT


def baselines(history: Mapping[int, Sequence[float]]) -> dict[int, Baseline]:
    """Each channel's centre and spread over its settled scores, as `scoring.normalise_rewards` computes them."""
    return {channel: Baseline.of(scores) for channel, scores in history.items() if scores}


def trial_reward(score: float, baseline: Baseline | None, clip: float = REWARD_CLIP) -> float:
    """A settled post's reward: squash(score) against its channel's frozen baseline, clipped to ±clip."""
    return (baseline or Baseline()).reward(score, clip)


@dataclass(frozen=True)
class ArmSummary:
    """What one arm has so far."""

    posts: int
    mean_reward: float


@dataclass(frozen=True)
class Decision:
    """The state of the test: its verdict (None while undecided) and the figures behind it."""

    verdict: Verdict | None
    settled: int
    arms: dict[str, ArmSummary]
    estimate: float  # candidate minus incumbent mean reward
    bound: tuple[float, float]  # time-uniform 1-alpha confidence sequence on the difference (IPW, asymptotic)
    evidence_better: float  # K⁺: promote at 1/alpha
    evidence_worse: float  # K⁻: keep at 1/alpha
    threshold: float

    @property
    def decided(self) -> bool:
        """True once the test has reached a verdict."""
        return self.verdict is not None

    def summary(self) -> str:
        """One line for operators."""
        c, i = self.arms[CANDIDATE], self.arms[INCUMBENT]
        head = VERDICT_TEXT[self.verdict] if self.verdict else "undecided"
        return (
            f"{head} · {self.settled} settled (candidate {c.posts}, incumbent {i.posts}) · mean reward "
            f"{c.mean_reward:+.3f} vs {i.mean_reward:+.3f} · difference {self.estimate:+.3f} "
            f"[{self.bound[0]:+.3f}, {self.bound[1]:+.3f}] · evidence better {self.evidence_better:.2f}, "
            f"worse {self.evidence_worse:.2f} of {self.threshold:.0f}"
        )


@dataclass
class TrialState:
    """The test's running state. Feed settled posts in order with `observe`; read `decision()`."""

    config: TrialConfig = field(default_factory=TrialConfig)
    n: int = 0
    log_better: float = 0.0  # log K⁺
    log_worse: float = 0.0  # log K⁻
    verdict: Verdict | None = None
    _sum_reward: float = 0.0  # over both arms: the running centre m
    _arm_n: dict[str, int] = field(default_factory=lambda: {INCUMBENT: 0, CANDIDATE: 0})
    _arm_sum: dict[str, float] = field(default_factory=lambda: {INCUMBENT: 0.0, CANDIDATE: 0.0})
    _z_sum: float = 0.0
    _z_sq: float = 0.0

    def observe(self, arm: str, reward: float) -> Verdict | None:
        """Add one settled post (in the order the posts were made); return the verdict once there is one.

        After a verdict, further posts are ignored: the trial is over.
        """
        if self.verdict is not None:
            return self.verdict
        if arm not in (INCUMBENT, CANDIDATE):
            raise ValueError(f"unknown arm {arm!r}")
        cfg = self.config
        r = max(-cfg.clip, min(cfg.clip, float(reward)))
        m = self._sum_reward / self.n if self.n else 0.0  # predictable centre: posts before this one
        p = cfg.share
        weight = 1.0 / p if arm == CANDIDATE else -1.0 / (1.0 - p)
        z = (r - m) * weight
        # the largest |Z| this post could have produced, known before its reward: keeps each factor positive
        z_max = (cfg.clip + abs(m)) / min(p, 1.0 - p)
        cap = BET_CAP / z_max
        # aGRAPA bets from the posts before this one, shrunk towards zero by PRIOR_POSTS pseudo-posts
        mean_z = self._z_sum / (self.n + PRIOR_POSTS)
        second = (self._z_sq + PRIOR_POSTS * _prior_second_moment(p)) / (self.n + PRIOR_POSTS)
        bet_better = min(cap, max(0.0, mean_z / second))
        bet_worse = min(cap, max(0.0, -mean_z / second))
        self.log_better += math.log1p(bet_better * z)
        self.log_worse += math.log1p(-bet_worse * z)
        # update the running sums only after betting: the bets must not see this post
        self.n += 1
        self._sum_reward += r
        self._arm_n[arm] += 1
        self._arm_sum[arm] += r
        self._z_sum += z
        self._z_sq += z * z
        threshold = math.log(1.0 / cfg.alpha)
        if self.log_better >= threshold:
            self.verdict = "promote"
        elif self.log_worse >= threshold:
            self.verdict = "keep"
        elif self.n >= cfg.max_posts:
            self.verdict = "futile"
        return self.verdict

    def decision(self) -> Decision:
        """The verdict so far with its figures."""
        arms = {
            a: ArmSummary(self._arm_n[a], self._arm_sum[a] / self._arm_n[a] if self._arm_n[a] else 0.0) for a in ARMS
        }
        estimate = arms[CANDIDATE].mean_reward - arms[INCUMBENT].mean_reward
        return Decision(
            verdict=self.verdict,
            settled=self.n,
            arms=arms,
            estimate=estimate,
            bound=self._confidence_sequence(),
            evidence_better=math.exp(min(self.log_better, 700.0)),
            evidence_worse=math.exp(min(self.log_worse, 700.0)),
            threshold=1.0 / self.config.alpha,
        )

    def _confidence_sequence(self) -> tuple[float, float]:
        # normal-mixture boundary on the sum of Z: |S_n - n·Δ| ≤ sqrt((V+ρ)·log((V+ρ)/(ρ·α²))), V = Σ(Z - mean)²
        if self.n < 2:
            return (-math.inf, math.inf)
        mean = self._z_sum / self.n
        v = max(self._z_sq - self.n * mean * mean, 1e-12)
        rho = CS_RHO_POSTS * _prior_second_moment(self.config.share)
        radius = math.sqrt((v + rho) * math.log((v + rho) / (rho * self.config.alpha**2))) / self.n
        return (mean - radius, mean + radius)


def _prior_second_moment(p: float) -> float:
    # E[Z²] for unit-variance rewards and no difference: Var(R)·(1/p + 1/(1-p))
    return 1.0 / p + 1.0 / (1.0 - p)


def run_test(observations: Iterable[tuple[str, float]], config: TrialConfig) -> TrialState:
    """Replay settled (arm, reward) pairs in post order; the state stops at the first verdict."""
    state = TrialState(config)
    for arm, reward in observations:
        if state.observe(arm, reward) is not None:
            break
    return state


def group_scores(channels: Sequence[int], scores: Sequence[float]) -> dict[int, list[float]]:
    """Scores grouped by channel (for `baselines`)."""
    out: dict[int, list[float]] = defaultdict(list)
    for c, s in zip(channels, scores, strict=True):
        out[c].append(s)
    return dict(out)
