"""The live A/B trial's sequential test and arm assignment (bot/trials/sequential.py), on crafted reward streams."""

from __future__ import annotations

import random

import pytest

from bot.trials.sequential import (
    CANDIDATE,
    INCUMBENT,
    Baseline,
    TrialConfig,
    TrialState,
    assign_arm,
    baselines,
    run_test,
    trial_reward,
)


def _stream(seed: int, n: int, cand_mean: float, inc_mean: float, share: float = 0.5):
    """(arm, reward) pairs: arms by the trial's coin, rewards normal around each arm's mean, sd 1."""
    rng = random.Random(seed)
    for i in range(n):
        arm = assign_arm(seed, i, share)
        yield arm, rng.gauss(cand_mean if arm == CANDIDATE else inc_mean, 1.0)


def test_clearly_better_candidate_is_promoted():
    """A candidate half a spread better is promoted, well before the budget."""
    state = run_test(_stream(1, 5000, 0.5, 0.0), TrialConfig())
    d = state.decision()
    assert d.verdict == "promote"
    assert d.settled < 500
    assert d.estimate > 0.2 and d.evidence_better >= d.threshold


def test_clearly_worse_candidate_is_kept_out():
    """A candidate half a spread worse ends the trial with the incumbent kept."""
    d = run_test(_stream(2, 5000, -0.5, 0.0), TrialConfig()).decision()
    assert d.verdict == "keep"
    assert d.settled < 500
    assert d.estimate < -0.2


def test_equal_arms_are_rarely_promoted_and_stop_at_the_budget():
    """With equal arms, at most about alpha of 200 trials promote; most run to the futility stop."""
    config = TrialConfig(max_posts=600)
    verdicts = [run_test(_stream(100 + s, 1000, 0.0, 0.0), config).verdict for s in range(200)]
    assert verdicts.count("promote") <= 200 * 0.05 + 6  # alpha plus three binomial standard deviations
    assert verdicts.count("futile") >= 150


def test_equal_constant_rewards_never_decide():
    """Identical rewards on both arms carry no evidence: the trial reaches the futility stop exactly at the budget."""
    state = run_test(((assign_arm(0, i, 0.5), 1.0) for i in range(10_000)), TrialConfig(max_posts=300))
    assert state.verdict == "futile"
    assert state.n == 300
    assert state.decision().evidence_better == pytest.approx(1.0)


def test_futility_stop_counts_settled_posts():
    """No verdict before max_posts settled posts on a null stream; `futile` exactly at it."""
    state = TrialState(TrialConfig(max_posts=50))
    rng = random.Random(3)
    for i in range(49):
        assert state.observe(assign_arm(3, i, 0.5), rng.choice([-0.1, 0.0, 0.1])) is None
    assert state.observe(INCUMBENT, 0.0) == "futile"


def test_verdict_is_final():
    """Posts after a verdict change nothing."""
    state = run_test(_stream(4, 5000, 1.0, 0.0), TrialConfig())
    before = state.decision()
    assert state.observe(INCUMBENT, 2.5) == "promote"
    assert state.decision() == before


def test_checked_after_every_post_the_false_promotion_rate_holds():
    """Peeking after every post of 400 null streams (skewed, tied rewards) promotes at most about alpha of them."""
    config = TrialConfig(max_posts=1500)
    promoted = 0
    for s in range(400):
        rng = random.Random(10_000 + s)
        stream = ((assign_arm(s, i, 0.5), min(2.5, rng.expovariate(1.0) - 0.7)) for i in range(1500))
        promoted += run_test(stream, config).verdict == "promote"
    assert promoted <= 400 * 0.05 + 13  # alpha plus three binomial standard deviations


def test_unequal_share_is_respected_and_still_valid():
    """With share 0.2 the candidate gets about a fifth of the posts, and a better one is still promoted."""
    arms = [assign_arm(7, i, 0.2) for i in range(5000)]
    assert 0.18 < arms.count(CANDIDATE) / 5000 < 0.22
    d = run_test(_stream(7, 5000, 0.6, 0.0, share=0.2), TrialConfig(share=0.2)).decision()
    assert d.verdict == "promote"


def test_arm_assignment_is_reproducible_and_seed_dependent():
    """The same (seed, index) gives the same arm across calls (a restart re-derives it); seeds differ."""
    a = [assign_arm(11, i, 0.5) for i in range(200)]
    assert a == [assign_arm(11, i, 0.5) for i in range(200)]
    assert a != [assign_arm(12, i, 0.5) for i in range(200)]
    assert 0.4 < a.count(CANDIDATE) / 200 < 0.6


def test_config_rejects_degenerate_values():
    """A share of 0 or 1 cannot compare arms; alpha must be a probability."""
    for bad in ({"share": 0.0}, {"share": 1.0}, {"alpha": 0.0}, {"max_posts": 0}):
        with pytest.raises(ValueError):
            TrialConfig(**bad)


def test_rewards_use_a_frozen_channel_baseline():
    """A post's reward is squash(score) against its channel's baseline, clipped; a missing baseline is (0, 1)."""
    base = baselines({5: [0, 0, 1, 2, 0, 3, 1]})[5]
    assert trial_reward(0.0, base) < 0 < trial_reward(5.0, base)
    assert trial_reward(1e9, base) == 2.5
    assert trial_reward(0.0, None) == 0.0
    assert trial_reward(0.0, Baseline(0.0, 1.0)) == 0.0


def test_confidence_sequence_covers_the_estimate_and_shrinks():
    """The displayed bound contains the estimate and narrows as posts settle."""
    state = TrialState(TrialConfig(max_posts=10_000))
    widths = []
    for i, (arm, r) in enumerate(_stream(9, 3000, 0.0, 0.0)):
        state.observe(arm, r)
        if i in (100, 2999):
            lo, hi = state.decision().bound
            widths.append(hi - lo)
            assert lo < 0.0 < hi or state.verdict is not None
    assert widths[1] < widths[0]


def test_stats_label_trial_posts_with_their_arm():
    """/stats colours an A/B trial's posts by arm: the series label carries the arm."""
    from bot.domain.scoring import ScoreFormula
    from bot.storage import Post, PostRecord
    from tests.support.stats import daily_scores

    def rec(i, adapter, arm):
        post = Post(
            i, i, 1, None, "post", "t", "", (), (), adapter, {}, 86400.0 * 3, None, trial_id=1 if arm else None, arm=arm
        )
        return PostRecord(post, (), ())

    labels = {
        d.adapter
        for d in daily_scores(
            [rec(1, "v1", "incumbent"), rec(2, "v2", "candidate"), rec(3, "v1", None)], ScoreFormula()
        )
    }
    assert labels == {"v1 (incumbent)", "v2 (candidate)", "v1"}
