import pytest

from bot.domain.scoring import REWARD_CLIP, ScoreFormula, normalise_rewards, score_post
from bot.storage import Post, PostRecord, Reply, Vote

F = ScoreFormula(emoji_weights={"👎": -1.0, "⭐": 3.0}, default_emoji_weight=1.0, reply_weight=2.0, settle_hours=12)


def record(votes=(), replies=()) -> PostRecord:
    p = Post(1, 1, 1, None, "post", "t", "", (0,), (1,), "base", {}, 0.0, None)
    return PostRecord(p, tuple(Vote(m, e, 0.0) for m, e in votes), tuple(Reply(i, m, 0.0) for i, m in replies))


@pytest.mark.parametrize(
    ("votes", "replies", "expected"),
    [
        ((), (), 0.0),  # empty data
        (((1, "❤️"),), (), 1.0),
        (((1, "❤️"), (2, "❤️")), (), 2.0),  # two members, two votes
        (((1, "❤️"), (1, "👍")), (), 1.0),  # one member, two emoji: still one vote
        (((1, "⭐"), (1, "👍")), (), 2.0),  # one member's vote is the mean of their weights
        (((1, "👎"),), (), -1.0),  # negative weight
        (((1, "👎"), (2, "⭐")), (), 2.0),
        ((), ((10, 1), (11, 1)), 2.0),  # one member replying twice counts once
        (((1, "❤️"),), ((10, 1), (11, 2)), 5.0),
    ],
)
def test_score_table(votes, replies, expected):
    """Scores count unique members, average a member's emoji, and weigh replies once per member."""
    assert score_post(record(votes, replies), F) == pytest.approx(expected)


def test_normalise_is_per_channel():
    """A busy channel's big scores do not drown a quiet one: each is centred on itself."""
    scores = [100, 120, 80, 1, 2, 0]
    groups = [1, 1, 1, 2, 2, 2]
    r = normalise_rewards(scores, groups)
    assert r[1] > 0 > r[2] and r[4] > 0 > r[5]
    assert abs(r[0]) < 1e-9 and abs(r[3]) < 1e-9  # the medians sit at zero


def test_normalise_clips_outliers():
    """A viral post's reward is clipped."""
    r = normalise_rewards([0, 0, 1, 0, 1, 10_000], [1] * 6)
    assert max(r) == REWARD_CLIP


def test_normalise_constant_scores_gives_zero():
    """When every post scored the same there is nothing to learn: all advantages are zero."""
    assert normalise_rewards([3, 3, 3], [1, 1, 1]) == [0.0, 0.0, 0.0]


def test_normalise_uses_history_baseline():
    """Yesterday's scores form the baseline: a night that is better overall gets positive advantages."""
    r = normalise_rewards([5, 6, 7], [1, 1, 1], history={1: [0, 1, 0, 1, 0, 1, 0, 1]})
    assert all(x > 0 for x in r)


def test_normalise_negative_scores_keep_sign():
    """Net-negative posts get lower rewards than neutral ones."""
    r = normalise_rewards([-3, 0, 0, 0, 2], [1] * 5)
    assert r[0] < r[1] < r[4]


def test_normalise_rejects_mismatched_lengths():
    with pytest.raises(ValueError):
        normalise_rewards([1, 2], [1])
