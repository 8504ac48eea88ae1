import random

from bot.domain.safety import OutputFilter
from bot.engine.compose import compose_post, pick
from bot.engine.generator import Sample


def samples(*texts):
    return [Sample(t, "", (0,), (i + 1, 0), "base", {}) for i, t in enumerate(texts)]


def by_length(texts):
    return [float(len(t)) for t in texts]


def test_best_of_n_sends_the_highest_predicted_postable_candidate():
    """The reward model's favourite is sent, unless the filter refuses it; every candidate keeps its prediction."""
    choice = pick(
        samples("short", "a much longer text", "buy crypto now please"), OutputFilter(("crypto",)), scorer=by_length
    )
    assert choice.sample.text == "a much longer text" and choice.chosen == 1 and not choice.explored
    assert [c.predicted for c in choice.candidates] == [5.0, 18.0, 21.0]
    assert [c.postable for c in choice.candidates] == [True, True, False]
    assert choice.candidates[2].completion_ids == (3, 0)


def test_without_a_reward_model_the_first_postable_sample_is_sent():
    """No scorer: a plain draw of the policy, as before best-of-N; nothing is predicted."""
    choice = pick(samples("   ", "second", "third"), OutputFilter())
    assert choice.sample.text == "second" and all(c.predicted is None for c in choice.candidates)


def test_nothing_postable_gives_none():
    """A batch the filter refuses entirely picks nothing."""
    assert pick(samples("", " "), OutputFilter(), scorer=by_length) is None


def test_exploration_share_picks_uniformly_among_postable_ones():
    """With explore=1 the pick ignores the model, but never sends a refused text."""
    rng = random.Random(0)
    texts = samples("a", "bb", "ccc", "")
    picked = [pick(texts, OutputFilter(), scorer=by_length, explore=1.0, rng=rng) for _ in range(200)]
    assert {c.sample.text for c in picked} == {"a", "bb", "ccc"} and all(c.explored for c in picked)
    greedy = [pick(texts, OutputFilter(), scorer=by_length, explore=0.0, rng=rng) for _ in range(20)]
    assert {c.sample.text for c in greedy} == {"ccc"}


class CountingGenerator:
    def __init__(self, texts):
        self.texts, self.calls = list(texts), []

    async def generate(self, n, **kw):
        self.calls.append(n)
        out, self.texts = self.texts[:n], self.texts[n:]
        return samples(*out)


async def test_compose_draws_n_candidates_in_one_batch():
    """Best-of-N is one generate call of N samples, not N calls."""
    gen = CountingGenerator(["x" * k for k in range(1, 9)])
    choice = await compose_post(gen, prompt="", output_filter=OutputFilter(), best_of=8, scorer=by_length)
    assert gen.calls == [8] and choice.sample.text == "x" * 8 and len(choice.candidates) == 8


async def test_compose_without_a_model_draws_two():
    """Until a reward model exists, N draws would choose nothing: two, the first postable sent."""
    gen = CountingGenerator(["one", "two"])
    choice = await compose_post(gen, prompt="", output_filter=OutputFilter(), best_of=8, scorer=None)
    assert gen.calls == [2] and choice.sample.text == "one"


class ScriptedTexts:
    """Returns the given texts, two per call."""

    def __init__(self, texts):
        self.texts = list(texts)

    async def generate(self, n, **kw):
        return [Sample(self.texts.pop(0), "", (0,), (1,), "base", {}) for _ in range(n)]


async def test_post_text_is_the_checked_normalised_text():
    """An obfuscated invite is resampled; the post that goes out is normalised (invisible characters gone, spaces
    collapsed, full-width letters plain), exactly the text that passed."""
    morn = "\uff4d\uff4f\uff52\uff4e"  # full-width
    gen = ScriptedTexts(["join discord\u3002gg/abc", "d\u0456scord.gg/x", f"a\u200b  quiet {morn}", "spare"])
    f = OutputFilter()
    choice = await compose_post(gen, prompt="", output_filter=f, tries=2)
    assert choice is not None
    sample = choice.sample
    assert sample.text == "a quiet morn"
    assert f.check(sample.text).ok and f.check(sample.text).text == sample.text
    assert f.resampled["invite"] == 2


def test_novelty_passes_over_a_candidate_that_repeats_the_channels_recent_phrases():
    """With a novelty weight, a candidate made of phrases the channel just posted loses to a slightly lower-predicted
    fresh one; without the weight (or without recent posts) the reward model's favourite is sent, and the recorded
    predictions stay the model's own."""
    batch = samples("good morning coffee lovers", "the garden is quiet tonight")

    def scorer(texts):
        return [1.1 if "coffee" in t else 1.0 for t in texts]

    recent = ["good morning coffee lovers everywhere", "more coffee please"]
    assert pick(batch, OutputFilter(), scorer=scorer).chosen == 0
    assert pick(batch, OutputFilter(), scorer=scorer, recent=recent, novelty=0.0).chosen == 0
    assert pick(batch, OutputFilter(), scorer=scorer, novelty=1.0).chosen == 0  # no recent posts: nothing familiar
    choice = pick(batch, OutputFilter(), scorer=scorer, recent=recent, novelty=1.0)
    assert choice.chosen == 1 and [c.predicted for c in choice.candidates] == [1.1, 1.0]
    # a small weight does not outweigh a large predicted gap
    assert pick(batch, OutputFilter(), scorer=scorer, recent=recent, novelty=0.05).chosen == 0


async def test_compose_passes_recent_posts_to_the_pick():
    """compose_post hands the channel's recent posts and the weight to the pick."""
    gen = CountingGenerator(["good morning coffee lovers", "the garden is quiet tonight"])
    choice = await compose_post(
        gen,
        prompt="",
        output_filter=OutputFilter(),
        best_of=2,
        scorer=lambda texts: [1.1 if "coffee" in t else 1.0 for t in texts],
        recent=["good morning coffee lovers everywhere"],
        novelty=1.0,
    )
    assert choice.sample.text == "the garden is quiet tonight"
