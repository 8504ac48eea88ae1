"""Several posts at once: one mixed batch for every pending post, each picked on its own rows."""

import pytest

from bot.domain.safety import OutputFilter
from bot.engine.compose import PostRequest, compose_post, compose_posts
from bot.engine.generator import AdapterLoadError, Sample


class MixedScript:
    """A generator whose adapters write scripted texts: each call pops the next text of each row's adapter."""

    def __init__(self, texts, broken=()):
        self.texts = {k: list(v) for k, v in texts.items()}
        self.broken, self.calls = set(broken), []

    async def generate_mixed(self, requests, **kw):
        self.calls.append([(r.adapter, r.n) for r in requests])
        for r in requests:
            if r.adapter in self.broken:
                raise AdapterLoadError(f"adapter {r.adapter!r} is broken", r.adapter)
        return [
            [Sample(self.texts[r.adapter].pop(0), r.prompt, (0,), (i + 1, 0), r.adapter, {}) for i in range(r.n)]
            for r in requests
        ]

    async def generate(self, n, *, prompt="", adapter=None, **kw):
        (group,) = await self.generate_mixed([type("R", (), {"adapter": adapter, "n": n, "prompt": prompt})()])
        return group


def by_length(texts):
    return [float(len(t)) for t in texts]


async def test_all_posts_are_drawn_in_one_batch_and_picked_per_row():
    """Each community's reward model picks among its own candidates only; a community without one takes its
    first postable draw; every chosen sample carries its own adapter."""
    gen = MixedScript({"g1/v0002": ["a", "aaaa", "aa"], "g2/v0001": ["zz", "z"], "commons/v0001": ["c1", "c2"]})
    requests = [
        PostRequest("g1/v0002", channel_id=1, scorer=by_length, best_of=3),
        PostRequest("g2/v0001", channel_id=2, scorer=lambda ts: [-len(t) for t in ts], best_of=2),
        PostRequest("commons/v0001", channel_id=3),
    ]
    choices = await compose_posts(gen, requests, output_filter=OutputFilter())
    assert gen.calls == [[("g1/v0002", 3), ("g2/v0001", 2), ("commons/v0001", 2)]]
    assert [c.sample.text for c in choices] == ["aaaa", "z", "c1"]
    assert [c.sample.adapter for c in choices] == ["g1/v0002", "g2/v0001", "commons/v0001"]
    assert [len(c.candidates) for c in choices] == [3, 2, 1]


async def test_only_refused_posts_are_drawn_again_each_with_its_own_filter():
    """A post whose whole group the filter refused is redrawn (alone, in the next batch); one community's
    blocklist does not refuse another's posts; after `tries` batches the post is skipped and counted."""
    gen = MixedScript({"g1/v1": ["buy crypto", "crypto!", "fine post", "x"], "g2/v1": ["crypto is fun", "y"]})
    strict = OutputFilter(("crypto",))
    requests = [PostRequest("g1/v1", output_filter=strict), PostRequest("g2/v1")]
    choices = await compose_posts(gen, requests, output_filter=OutputFilter(), tries=3)
    assert [c.sample.text for c in choices] == ["fine post", "crypto is fun"]
    assert gen.calls == [[("g1/v1", 2), ("g2/v1", 2)], [("g1/v1", 2)]]
    gen = MixedScript({"g1/v1": ["crypto"] * 4, "g2/v1": ["ok", "ok"]})
    choices = await compose_posts(
        gen, [PostRequest("g1/v1", output_filter=strict), PostRequest("g2/v1")], output_filter=OutputFilter(), tries=2
    )
    assert choices[0] is None and choices[1].sample.text == "ok" and len(gen.calls) == 2
    assert strict.skipped == 1


async def test_a_broken_adapter_skips_its_posts_not_the_others():
    gen = MixedScript({"g2/v1": ["ok", "ok"]}, broken={"g1/v9"})
    choices = await compose_posts(gen, [PostRequest("g1/v9"), PostRequest("g2/v1")], output_filter=OutputFilter())
    assert choices[0] is None and choices[1].sample.adapter == "g2/v1"
    assert gen.calls == [[("g1/v9", 2), ("g2/v1", 2)], [("g2/v1", 2)]]


async def test_one_request_picks_as_compose_post_does():
    """The same draws, scorer and pick as the single-post path."""
    texts = ["short", "a much longer one", "mid size"]
    single = await compose_post(
        MixedScript({None: list(texts)}), prompt="", output_filter=OutputFilter(), best_of=3, scorer=by_length
    )
    (many,) = await compose_posts(
        MixedScript({"base": list(texts)}), [PostRequest(scorer=by_length, best_of=3)], output_filter=OutputFilter()
    )
    assert (many.sample.text, many.chosen, many.candidates) == (single.sample.text, single.chosen, single.candidates)


@pytest.mark.slow
async def test_compose_posts_on_the_tiny_model(tiny_settings, tmp_path):
    """End to end on a real model: three communities' posts in one mixed batch, each by its own adapter."""
    from bot.adapters.store import AdapterStore
    from bot.engine.generator import Generator, SamplingParams
    from bot.engine.model import load_base
    from tests.support.adapters import make_adapter

    s = tiny_settings()
    loaded = load_base(s.model, s.data_dir, device="cpu")
    store = AdapterStore(tmp_path / "adapters")
    paths = {ref: store.path(make_adapter(loaded, store, seed)) for ref, seed in (("g1/v0001", 1), ("g2/v0001", 2))}
    g = Generator(loaded, SamplingParams(max_new_tokens=12), resolver=paths.get)
    calls = []
    g.observers.append(lambda took, samples: calls.append(len(samples)))
    try:
        requests = [
            PostRequest("g1/v0001", channel_id=1, scorer=by_length, best_of=4),
            PostRequest("g2/v0001", channel_id=2, prompt="the cat"),
            PostRequest("base", channel_id=3),
        ]
        choices = await compose_posts(g, requests, output_filter=OutputFilter())
    finally:
        await g.close()
    assert [c.sample.adapter for c in choices] == ["g1/v0001", "g2/v0001", "base"]
    assert calls[0] == 4 + 2 + 2  # one batch of every post's candidates
    assert len(choices[0].candidates) == 4 and all(c.predicted is not None for c in choices[0].candidates)
