"""Mixed-adapter batches: every row is written by its own adapter, in one generate; adapters load on demand into a
bounded cache (least recently used out, pinned and in-flight ones kept)."""

import asyncio

import pytest

from bot.adapters.store import BASE, AdapterStore
from bot.engine.generator import AdapterLoadError, Generator, Request, SamplingParams
from bot.training.objective import repeat3
from tests.engine.test_generator import loaded  # noqa: F401 - fixture
from tests.support.adapters import make_adapter

pytestmark = pytest.mark.slow

GREEDY = {"top_k": 1}  # one token survives top-k: sampling is deterministic, so a row can be compared exactly


@pytest.fixture
def refs(loaded, tmp_path):  # noqa: F811
    """Three adapters on disk under community references, as issue 24 names them."""
    store = AdapterStore(tmp_path / "adapters")
    names = [make_adapter(loaded, store, seed) for seed in (1, 2, 3)]
    return {ref: store.path(n) for ref, n in zip(("g1/v0001", "g2/v0001", "commons/v0001"), names, strict=True)}


@pytest.fixture
async def gen(loaded, refs):  # noqa: F811
    loads = []

    def resolver(ref):
        loads.append(ref)
        return refs[ref]

    g = Generator(loaded, SamplingParams(max_new_tokens=12), keep_loaded=2, resolver=resolver)
    g.loads = loads
    yield g
    await g.close()


@pytest.mark.parametrize("mode", ["peft", "batched"])
async def test_each_row_is_written_by_its_own_adapter(gen, refs, mode):
    """Both ways of running a mixed batch (peft's adapter_names, stacked LoRA weights): in one mixed batch, each
    request's rows equal what its adapter writes alone (same prompt, deterministic decoding), whatever else shares
    the batch; prompts of different lengths are padded without changing a row."""
    requests = [
        Request("g1/v0001", "the cat", n=2),
        Request(BASE, "a much longer prompt about football and the match", n=1),
        Request("g2/v0001", "", n=2),
        Request("commons/v0001", "the cat", n=1),
        Request("g1/v0001", "a much longer prompt about football and the match", n=1),
    ]
    gen.mixed_batches = mode
    mixed = await gen.generate_mixed(requests, **GREEDY)
    assert [len(m) for m in mixed] == [2, 1, 2, 1, 1]
    for req, samples in zip(requests, mixed, strict=True):
        alone = await gen.generate(req.n, prompt=req.prompt, adapter=req.adapter, **GREEDY)
        assert [s.adapter for s in samples] == [req.adapter] * req.n
        assert [s.completion_ids for s in samples] == [s.completion_ids for s in alone]
        assert samples[0].prompt_ids == alone[0].prompt_ids  # each row's own ids, not the padded ones
    same_prompt = {req.adapter: s[0].completion_ids for req, s in zip(requests, mixed, strict=True)}
    assert same_prompt["g1/v0001"] != same_prompt["commons/v0001"]  # the adapters really differ on one prompt


async def test_a_mixed_batch_samples_each_adapter_differently(gen):
    """With ordinary sampling, rows of different adapters under one seed differ, and the seed reproduces them."""
    requests = [Request(ref, "", n=4) for ref in ("g1/v0001", "g2/v0001", BASE)]
    first = await gen.generate_mixed(requests, seed=3)
    again = await gen.generate_mixed(requests, seed=3)
    ids = [[s.completion_ids for s in group] for group in first]
    assert ids == [[s.completion_ids for s in group] for group in again]
    assert ids[0] != ids[1] != ids[2]


async def test_the_no_repeat_guard_works_per_row(loaded, refs):  # noqa: F811
    """Deterministic decoding loops on the tiny model; the guard stops every row's loop, each on its own words."""
    looping, guarded = (
        Generator(loaded, SamplingParams(max_new_tokens=40, no_repeat_ngram=n), resolver=refs.get) for n in (0, 3)
    )
    requests = [Request(ref, p, n=1) for ref in (BASE, *refs) for p in ("", "the the the cat")]
    try:
        loops = [s.text for g in await looping.generate_mixed(requests, top_k=1, stop_at_newline=False) for s in g]
        clean = [s.text for g in await guarded.generate_mixed(requests, top_k=1, stop_at_newline=False) for s in g]
    finally:
        await looping.close()
        await guarded.close()
    assert repeat3(loops) > 0.3
    assert repeat3(clean) == 0.0


async def test_lru_eviction_order_and_on_demand_loads(gen):
    """Bound 2: a miss loads through the resolver, a hit does not; the least recently used goes first."""
    a, b, c = "g1/v0001", "g2/v0001", "commons/v0001"
    await gen.generate(1, adapter=a)
    await gen.generate(1, adapter=b)
    await gen.generate(1, adapter=a)  # a hit: no load, and a becomes the most recently used
    assert gen.loads == [a, b] and gen.resident == [b, a]
    await gen.generate_mixed([Request(c, n=1)])
    assert gen.resident == [a, c] and not gen.is_resident(b)
    await gen.generate(1, adapter=b)  # evicted adapters come back from disk on demand
    assert gen.loads == [a, b, c, b] and gen.resident == [c, b]


async def test_a_batch_over_the_bound_loads_all_then_shrinks(gen):
    """Three adapters in one batch over a bound of two: none is evicted while the batch needs it."""
    out = await gen.generate_mixed([Request(r, n=1) for r in ("g1/v0001", "g2/v0001", "commons/v0001")])
    assert [g[0].adapter for g in out] == ["g1/v0001", "g2/v0001", "commons/v0001"]
    assert gen.resident == ["g2/v0001", "commons/v0001"]


async def test_pinned_adapters_are_never_evicted(gen, refs):
    """A trial's arms stay through any traffic; pins under other keys are independent; releasing lets them go."""
    a, b, c = "g1/v0001", "g2/v0001", "commons/v0001"
    await gen.preload(a, key="g1")  # pinned under g1
    await gen.preload(b, refs[b], pin=False)
    gen.pin({b}, key="g2")
    for _ in range(2):
        await gen.generate(1, adapter=c)
    assert gen.is_resident(a) and gen.is_resident(b) and gen.pinned == {a, b}
    assert not gen.is_resident(c)  # the bound is full of pinned arms: c is reloaded each time (2 loads)
    gen.pin(set(), key="g1")
    await gen.generate(1, adapter=c)
    assert gen.resident == [b, c]
    assert gen.loads == [a, c, c, c]  # b came by path, not through the resolver


async def test_a_missing_adapter_fails_the_batch_and_names_itself(loaded, refs):  # noqa: F811
    g = Generator(loaded, SamplingParams(max_new_tokens=4))  # no resolver
    try:
        with pytest.raises(AdapterLoadError) as err:
            await g.generate_mixed([Request("g1/v0001", n=1), Request("g9/v0001", n=1, path=refs["g2/v0001"])])
        assert err.value.adapter == "g1/v0001"
        out = await g.generate_mixed([Request("g9/v0001", n=1, path=refs["g2/v0001"])])  # a path is enough
        assert out[0][0].adapter == "g9/v0001" and g.active == BASE
    finally:
        await g.close()


async def test_mixed_batches_leave_the_serving_adapter_and_do_not_block_the_loop(gen, refs):
    await gen.use_adapter("g1/v0001", refs["g1/v0001"])
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    task = asyncio.create_task(ticker())
    await gen.generate_mixed([Request(r, n=4) for r in ("g2/v0001", BASE, "commons/v0001")], max_new_tokens=32)
    task.cancel()
    assert ticks > 0 and gen.active == "g1/v0001"
    assert {s.adapter for s in await gen.generate(2)} == {"g1/v0001"}
