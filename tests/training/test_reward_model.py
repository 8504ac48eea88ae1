import random

import pytest

from bot.training.reward_model import RewardModel, features, fit_reward_model

WORDS = ["coffee", "garden", "song", "cat", "moon", "rain", "code", "pizza", "team", "bread"]


def _posts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.sample(WORDS, 3)) + rng.choice(["", "?"]) for _ in range(n)]


def _poisson(rng: random.Random, lam: float) -> int:
    # Knuth's method: small means only
    limit, k, p = pow(2.718281828459045, -lam), 0, 1.0
    while True:
        p *= rng.random()
        if p < limit:
            return k
        k += 1


def test_features_are_words_and_style():
    assert features("Coffee, again? ☕") == {"coffee", "again", "<question>", "<emoji>"}


def test_bigram_features_are_adjacent_word_pairs():
    assert features("Hot take: coffee", bigrams=True) == {"hot", "take", "coffee", "hot take", "take coffee"}


def test_bigram_model_finds_a_liked_phrase_the_words_model_cannot():
    """An audience that likes the phrase "coffee garden" (in that order), not either word: the 1-2-gram model ranks
    the phrase above the same words reversed, and survives the JSON round trip; the words model cannot tell them
    apart."""
    rng = random.Random(1)
    texts = [["coffee garden ", "garden coffee ", ""][i % 3] + t for i, t in enumerate(_posts(400, 1))]
    scores = [_poisson(rng, 2.0 * (2.0 if "coffee garden" in t else 1.0)) for t in texts]
    ngrams = fit_reward_model(texts, scores, bigrams=True)
    words = fit_reward_model(texts, scores)
    assert ngrams.signal > words.signal and ngrams.top(1)[0][0] == "coffee garden"
    again = RewardModel.from_json(ngrams.as_json())
    phrase, reversed_ = again.scores(["coffee garden moon", "garden coffee moon"])
    assert phrase - reversed_ > 0.5
    assert words.scores(["coffee garden moon"]) == words.scores(["garden coffee moon"])


def test_finds_a_weak_liked_word_pooled_over_many_posts():
    """A word that raises engagement by half is found from noisy counts; the signal is clearly positive."""
    rng = random.Random(0)
    texts = _posts(400, 0)
    scores = [_poisson(rng, 2.0 * (1.5 if "coffee" in t else 1.0)) for t in texts]
    model = fit_reward_model(texts, scores, [i % 2 for i in range(len(texts))])
    assert model.signal > 0.02 and model.p_value <= 0.01
    assert model.top(1)[0][0] == "coffee"
    with_coffee, without = model.relative(["coffee moon rain", "cat moon rain"])
    assert with_coffee - without == pytest.approx(0.5, abs=0.25)


@pytest.mark.parametrize("seed", range(5))
def test_pure_noise_has_no_signal(seed):
    """An audience with no preferences: leave-one-out finds nothing, so the night would train nothing."""
    rng = random.Random(seed)
    texts = _posts(64, seed)
    scores = [_poisson(rng, 2.0) for _ in texts]
    model = fit_reward_model(texts, scores, [i % 2 for i in range(len(texts))])
    assert model.p_value > 0.05


def test_degenerate_inputs():
    assert fit_reward_model([], []).posts == 0
    assert fit_reward_model(["a", "b", "c"], [1, 2, 3]).signal == 0
    flat = fit_reward_model(_posts(20, 1), [2.0] * 20)
    assert flat.signal <= 0 and RewardModel().relative(["x"]) == [pytest.approx(-1.0)]
    with pytest.raises(ValueError):
        fit_reward_model(["a"], [1, 2])


def test_length_is_credited_to_length_not_to_the_words():
    """Scores that grow with length only: read at the usual length, long and short posts tie."""
    rng = random.Random(3)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 12))) for _ in range(300)]
    scores = [_poisson(rng, 0.4 * len(t.split())) for t in texts]
    model = fit_reward_model(texts, scores)
    assert model.length_weight > 0.2
    short, long = "coffee moon", "coffee moon garden song cat rain code pizza team bread"
    assert model.predict(long) > model.predict(short) + 1.5
    a, b = model.relative([short, long])
    assert abs(a - b) < 0.2


async def test_the_served_reward_model_round_trips_and_reloads_when_the_nightly_run_rewrites_it(tmp_path):
    """The nightly fit saved as JSON is what the posting path ranks by; a fit without signal ranks nothing."""
    import os

    from bot.training.reward_model import RewardModel, RewardModelFile, save_reward_model

    path = tmp_path / "adapters" / "reward_model.json"
    served = RewardModelFile(path)
    assert await served.current() is None  # no nightly run yet
    model = RewardModel(bias=1.0, weights={"cat": 0.5}, signal=0.1, ridge=3.0, posts=64, mean_score=1.0)
    save_reward_model(model, path)
    got = await served.current()
    assert got == model and got.scores(["a cat", "a dog"]) == [1.5, 1.0]
    save_reward_model(RewardModel(bias=1.0, weights={"cat": 0.5}, signal=-0.01), path)
    os.utime(path, ns=(1, 1))  # a different stamp even within the file system's time resolution
    assert await served.current() is None  # predicts worse than the constant: post as drawn
    path.write_text("{not json", encoding="utf-8")
    os.utime(path, ns=(2, 2))
    assert await served.current() is None
