"""Several resident adapters: a generation names its adapter, and concurrent calls never mix them up."""

import asyncio

import pytest

from bot.adapters.store import BASE, AdapterStore
from bot.engine.generator import AdapterLoadError
from tests.engine.test_generator import generator, loaded  # noqa: F401 - fixtures
from tests.support.adapters import make_adapter

pytestmark = pytest.mark.slow


async def test_per_call_adapter_matches_serving_it(loaded, generator, tmp_path):  # noqa: F811
    """Writing with a preloaded candidate equals serving it, and leaves the serving adapter unchanged."""
    store = AdapterStore(tmp_path / "adapters")
    inc, cand = make_adapter(loaded, store, 1), make_adapter(loaded, store, 2)
    await generator.use_adapter(inc, store.path(inc))
    await generator.preload(cand, store.path(cand))
    assert generator.active == inc and generator.is_resident(cand)
    by_name = await generator.generate(3, seed=9, adapter=cand)
    assert {s.adapter for s in by_name} == {cand}
    assert generator.active == inc
    inc_again = await generator.generate(3, seed=9)
    assert {s.adapter for s in inc_again} == {inc}
    await generator.use_adapter(cand, None)
    served = await generator.generate(3, seed=9)
    assert [s.completion_ids for s in served] == [s.completion_ids for s in by_name]
    assert [s.completion_ids for s in inc_again] != [s.completion_ids for s in by_name]


async def test_concurrent_arms_do_not_mix(loaded, generator, tmp_path):  # noqa: F811
    """Interleaved calls for two adapters (and base) each get their own adapter's samples."""
    store = AdapterStore(tmp_path / "adapters")
    inc, cand = make_adapter(loaded, store, 1), make_adapter(loaded, store, 2)
    await generator.use_adapter(inc, store.path(inc))
    await generator.preload(cand, store.path(cand))
    alone = {name: (await generator.generate(2, seed=4, adapter=name))[0].completion_ids for name in (inc, cand, BASE)}
    names = [inc, cand, BASE, cand, inc, cand]
    results = await asyncio.gather(*(generator.generate(2, seed=4, adapter=n) for n in names))
    for name, samples in zip(names, results, strict=True):
        assert samples[0].adapter == name
        assert samples[0].completion_ids == alone[name]


async def test_pinned_candidate_survives_eviction_and_unknown_is_refused(loaded, generator, tmp_path):  # noqa: F811
    """A trial's pinned candidate stays resident through swaps; an adapter never loaded cannot be named."""
    store = AdapterStore(tmp_path / "adapters")
    names = [make_adapter(loaded, store, s) for s in (1, 2, 3, 4)]
    await generator.use_adapter(names[0], store.path(names[0]))
    await generator.preload(names[1], store.path(names[1]))
    for n in names[2:]:
        await generator.use_adapter(n, store.path(n))
    assert generator.is_resident(names[1])
    with pytest.raises(AdapterLoadError):
        await generator.generate(1, adapter="never-loaded")
