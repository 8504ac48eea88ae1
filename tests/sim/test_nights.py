import random
from pathlib import Path

import pytest

from bot.domain.scoring import ScoreFormula
from bot.sim.nights import (
    BOT_MEMBER,
    AudienceError,
    AudienceSpec,
    bigrams,
    builtin_audiences,
    max_overlap,
    mean_ci,
    react,
)
from bot.storage import NewPost
from bot.training.objective import repeat3


def test_builtin_audiences_like_different_things():
    audiences = builtin_audiences()
    assert {"cat_people", "stargazers", "foodies", "dragon_fans"} <= set(audiences)
    assert audiences["cat_people"].affinity("my fluffy cat") > 0
    assert audiences["stargazers"].affinity("my fluffy cat") == 0
    assert audiences["stargazers"].affinity("the moon tonight") > 0


def test_affinity_likes_dislikes_style_and_cap():
    spec = AudienceSpec.from_dict(
        {
            "members": 3,
            "reaction_rate": 0.1,
            "likes": {"cat": 2},
            "dislikes": {"rain": 1},
            "question_weight": 0.5,
            "emoji_weight": 0.25,
            "max_affinity": 3,
        }
    )
    assert spec.affinity("Cat!") == 2
    assert spec.affinity("cat in the rain?") == pytest.approx(1.5)
    assert spec.affinity("cat 🐱 cat cat?") == pytest.approx(2.75)
    assert spec.affinity("unknown words only") == 0  # members simply never see them


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"reaction_rate": 0.1, "likes": {}}, "missing 'members'"),
        ({"members": 0, "reaction_rate": 0.1}, "at least 1"),
        ({"members": 5, "reaction_rate": 2}, "reaction_rate"),
        ({"members": 5, "reaction_rate": 0.1, "likes": {"cat": "lots"}}, "'likes' must map words to numbers"),
        ([1, 2], "JSON object"),
    ],
)
def test_bad_specs_name_the_problem(data, message):
    with pytest.raises(AudienceError, match=message):
        AudienceSpec.from_dict(data)


def test_spec_file_errors(tmp_path):
    bad = tmp_path / "a.json"
    bad.write_text("{not json")
    with pytest.raises(AudienceError, match="not valid JSON"):
        AudienceSpec.from_file(bad)
    with pytest.raises(AudienceError, match="cannot read"):
        AudienceSpec.from_file(tmp_path / "missing.json")


async def test_react_goes_through_storage_and_never_counts_bots(storage):
    """Liked posts collect more votes than disliked ones; the simulated bot's reactions never become votes."""
    spec = AudienceSpec.from_dict({"members": 40, "reaction_rate": 0.1, "likes": {"cat": 2}, "dislikes": {"rain": 2}})
    rng = random.Random(0)
    for mid, text in ((1, "a cat"), (2, "rain again")):
        await storage.add_post(NewPost(channel_id=1, text=text, adapter="base", created_at=0.0, message_id=mid))
        await react(storage, spec, mid, text, 1.0, rng)
    recs = {r.post.message_id: r for r in await storage.post_records()}
    assert len(recs[1].votes) > len(recs[2].votes)
    assert all(v.member_id != BOT_MEMBER for r in recs.values() for v in r.votes)


def test_old_specs_keep_working_and_new_keys_are_validated():
    spec = AudienceSpec.from_dict({"members": 3, "reaction_rate": 0.1, "likes": {"cat": 1}})
    assert (spec.taste_spread, spec.fatigue, spec.fatigue_window) == (0.0, 0.0, 64)
    with pytest.raises(AudienceError, match="taste_spread"):
        AudienceSpec.from_dict({"members": 3, "reaction_rate": 0.1, "taste_spread": -1})
    with pytest.raises(AudienceError, match="fatigue_window"):
        AudienceSpec.from_dict({"members": 3, "reaction_rate": 0.1, "fatigue_window": 0})


def test_taste_spread_gives_members_different_weights():
    data = {"members": 20, "reaction_rate": 0.05, "likes": {"coffee": 0.5}}
    same = AudienceSpec.from_dict(data).community(random.Random(0))
    spread = AudienceSpec.from_dict({**data, "taste_spread": 0.5}).community(random.Random(0))
    assert {likes["coffee"] for likes, _ in same.weights} == {0.5}
    weights = [likes["coffee"] for likes, _ in spread.weights]
    assert len(set(weights)) == 20 and min(weights) < 0.5 < max(weights)
    # members disagree, so their reaction chances to the same post differ
    assert len(set(spread.probabilities("fresh coffee"))) > 1


def test_fatigue_lowers_the_expected_score_of_a_repeated_post():
    formula = ScoreFormula()
    spec = AudienceSpec.from_dict({"members": 30, "reaction_rate": 0.05, "likes": {"coffee": 0.5}, "fatigue": 1.0})
    community = spec.community(random.Random(0))
    post = "nothing beats strong coffee this morning"
    fresh = community.expected_score(post, formula)
    community.see(post)
    assert community.expected_score(post, formula) < 0.6 * fresh  # the same post again: overlap 1, affinity -1
    other = community.expected_score("my garden is blooming today", formula)
    assert other == pytest.approx(
        spec.community(random.Random(0)).expected_score("my garden is blooming today", formula)
    )
    # without fatigue, repetition costs nothing
    calm = AudienceSpec.from_dict({"members": 30, "reaction_rate": 0.05, "likes": {"coffee": 0.5}}).community(
        random.Random(0)
    )
    calm.see(post)
    assert calm.expected_score(post, formula) == pytest.approx(fresh)


def test_expected_score_matches_sampled_reactions_on_average():
    """The analytic expectation is what `react` produces on average (votes, 👎 and replies included)."""
    import asyncio

    from bot.domain.scoring import score_post
    from bot.storage import Storage

    spec = AudienceSpec.from_dict(
        {"members": 30, "reaction_rate": 0.1, "likes": {"cat": 0.8}, "dislikes": {"rain": 0.8}, "reply_rate": 0.3}
    )
    formula = ScoreFormula()

    async def run(tmp: str) -> dict[str, float]:
        rng = random.Random(1)
        community = spec.community(rng)
        totals = {"a cat": 0.0, "rain again": 0.0, "plain words": 0.0}
        async with Storage.open(f"{tmp}/k.db") as storage:
            mid = 0
            for _ in range(300):
                for text in totals:
                    mid += 1
                    await storage.add_post(
                        NewPost(channel_id=1, text=text, adapter="b", created_at=0.0, message_id=mid)
                    )
                    await react(storage, community, mid, text, 1.0, rng)
            for rec in await storage.post_records():
                totals[rec.post.text] += score_post(rec, formula) / 300
        return {t: (v, community.expected_score(t, formula)) for t, v in totals.items()}

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for sampled, expected in asyncio.run(run(tmp)).values():
            assert sampled == pytest.approx(expected, abs=0.35)


def test_overlap_and_repeat3():
    a, b = bigrams("the cat sat on the mat"), bigrams("the cat sat on a hat")
    assert max_overlap(a, [b]) == pytest.approx(3 / 7)
    assert max_overlap(a, []) == 0 and max_overlap(a, [a, b]) == 1
    assert repeat3(["a b c a b c", "a b c d", "x y z"]) == pytest.approx(1 / 3)
    assert repeat3([]) == 0


def test_mean_ci_uses_students_t():
    mean, lo, hi = mean_ci([1.0, 2.0, 3.0])
    assert mean == 2 and hi - mean == pytest.approx(4.303 * 1 / 3**0.5, rel=1e-3) and lo == pytest.approx(2 - (hi - 2))
    assert mean_ci([1.5]) == (1.5, 1.5, 1.5)
    with pytest.raises(ValueError):
        mean_ci([])


def test_realistic_audience_is_weak_and_noisy():
    """The yardstick audience: ~40 members, a 3-5% base rate, at most ~2x odds, spread tastes and fatigue."""
    spec = builtin_audiences()["realistic"]
    assert 30 <= spec.members <= 50 and 0.03 <= spec.reaction_rate <= 0.05
    assert spec.max_affinity <= 0.75 and spec.taste_spread > 0 and spec.fatigue > 0
    null = builtin_audiences()["indifferent"]
    assert not null.likes and not null.dislikes


@pytest.mark.slow
async def test_null_audience_does_not_drift(tiny_settings, tmp_path):
    """An audience with no preferences at all: nothing is learnt, so the served adapter stays at the base (KL ≤
    0.05 every night) and the expected score does not move, whatever the sampled reactions said."""
    from bot.sim.nights import simulate

    settings = tiny_settings(KILROY_MIN_TRAIN_POSTS="4")
    result = await simulate(
        settings,
        builtin_audiences()["indifferent"],
        nights=3,
        posts_per_night=16,
        seed=0,
        workdir=tmp_path / "sim",
        eval_samples=16,
    )
    assert [n.night for n in result.nights] == [0, 1, 2]
    assert all(n.kl <= 0.05 for n in result.nights)
    assert result.lift == pytest.approx(1.0, abs=0.05)
    assert all(0 <= n.repeat3 <= 1 and n.mean_tokens > 0 and n.distinct2 > 0 for n in result.nights)
    assert result.as_json()["nights"][0].keys() >= {"expected_score", "kl", "repeat3", "mean_tokens", "distinct2"}


def test_phrase_and_length_preferences_leave_the_reward_models_class():
    """A phrase counts only as the ordered pair written together; the preferred length peaks at its ideal."""
    spec = AudienceSpec.from_dict(
        {
            "members": 1,
            "reaction_rate": 0.1,
            "likes": {},
            "phrases": {"Hot Take": 0.5},
            "length_ideal": 4,
            "length_width": 1,
            "length_weight": 0.3,
        }
    )
    assert spec.affinity("hot take: tea wins") == pytest.approx(0.8)
    assert spec.affinity("take hot: tea wins") == pytest.approx(0.3)  # the words, not the phrase
    assert spec.affinity("hot take: tea wins over every other drink here") < 0.51
    with pytest.raises(AudienceError, match="phrases"):
        AudienceSpec.from_dict({"members": 1, "reaction_rate": 0.1, "phrases": {"three word phrase": 1}})
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "audiences" / "phrase_length.json"
    assert AudienceSpec.from_file(path).phrases["hot take"] == 0.5


def test_simulated_picks_read_the_channels_history_for_novelty():
    """`simulate` picks as the bot does: each pick joins the channel's recent posts, so with a novelty weight the
    second group passes over a candidate repeating the first pick's phrases; without it the favourite wins twice."""
    from collections import deque

    from bot.config.settings import load_settings
    from bot.domain.safety import OutputFilter
    from bot.engine.generator import Sample
    from bot.sim.nights import _pick_all
    from bot.training.reward_model import RewardModel

    texts = ["the coffee is hot today", "plain words here", "the coffee is hot again", "a quiet garden"]
    drawn = [Sample(t, "", (0,), (1, 0), "base", {}) for t in texts]
    model = RewardModel(bias=1.0, weights={"coffee": 1.0}, signal=0.2, posts=64, mean_score=1.0)
    picks = {}
    for novelty in ("0", "1"):
        settings = load_settings(None, {"KILROY_BEST_OF_NOVELTY": novelty})
        recent: deque[str] = deque(maxlen=64)
        chosen = _pick_all(drawn, 2, OutputFilter(), model, None, None, recent, settings)
        picks[novelty] = [c.sample.text for c in chosen]
        assert list(recent) == picks[novelty]
    assert picks["0"] == ["the coffee is hot today", "the coffee is hot again"]
    assert picks["1"] == ["the coffee is hot today", "a quiet garden"]
