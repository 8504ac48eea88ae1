import asyncio
import time

import pytest

from bot.adapters.serving import AdapterService
from bot.adapters.store import BASE, AdapterStore, CorruptAdapter
from bot.engine.generator import AdapterLoadError, Generator, SamplingParams
from bot.engine.model import load_base
from tests.support.adapters import make_adapter

pytestmark = pytest.mark.slow


@pytest.fixture
def loaded(tiny_settings):
    s = tiny_settings()
    return load_base(s.model, s.data_dir, device="cpu")


@pytest.fixture
async def generator(loaded):
    g = Generator(loaded, SamplingParams(max_new_tokens=24))
    yield g
    await g.close()


async def test_generation_keeps_samples_ids_and_adapter(generator):
    """Each sample carries its text, exact ids, settings and the adapter that wrote it."""
    samples = await generator.generate(4, seed=0)
    assert len(samples) == 4
    for s in samples:
        assert s.adapter == BASE and s.prompt_ids[0] == generator.loaded.tokenizer.eos_token_id
        assert 0 < s.tokens <= 24 and "\n" not in s.text
        assert s.params["max_new_tokens"] == 24


async def test_generation_does_not_block_the_event_loop(generator):
    """Another coroutine keeps running while the model generates."""
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    task = asyncio.create_task(ticker())
    started = time.perf_counter()
    await generator.generate(16, max_new_tokens=48)
    elapsed = time.perf_counter() - started
    task.cancel()
    assert elapsed > 0.05
    assert ticks >= elapsed / 0.005 * 0.3  # the loop ran throughout


async def test_use_switch_rollback_and_restart(loaded, generator, tmp_path):
    """Adapters switch without a restart, roll back instantly, and the choice survives a restart."""
    store = AdapterStore(tmp_path / "adapters")
    a, b = make_adapter(loaded, store, 1), make_adapter(loaded, store, 2, rank=8)
    service = AdapterService(store, generator)
    await service.use(a)
    (s,) = await generator.generate(1, seed=0)
    assert s.adapter == a
    took = await service.use(b)
    assert generator.active == b and took < 1.0
    assert await service.rollback() == a
    assert generator.active == a and store.current() == a
    # a "restart": a fresh generator over the same store serves the same adapter
    g2 = Generator(generator.loaded, SamplingParams(max_new_tokens=8))
    try:
        assert await AdapterService(store, g2).restore() == a
    finally:
        await g2.close()


async def test_different_adapters_sample_differently(loaded, generator, tmp_path):
    store = AdapterStore(tmp_path / "adapters")
    a = make_adapter(loaded, store, 3)
    base = [s.text for s in await generator.generate(4, seed=5)]
    await generator.use_adapter(a, store.path(a))
    tuned = [s.text for s in await generator.generate(4, seed=5)]
    assert base != tuned


async def test_bad_name_and_corrupt_file_leave_active_unchanged(loaded, generator, tmp_path):
    """A bad name, a missing or corrupt adapter are refused and the serving adapter stays."""
    from bot.adapters.store import AdapterError

    store = AdapterStore(tmp_path / "adapters")
    good = make_adapter(loaded, store, 4)
    service = AdapterService(store, generator)
    await service.use(good)
    bad = make_adapter(loaded, store, 5)
    weights = store.root / bad / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    for name in ("../../etc/passwd", "v9999", bad):
        with pytest.raises(AdapterError):
            await service.use(name)
        assert generator.active == good and store.current() == good
    (s,) = await generator.generate(1, seed=0)
    assert s.adapter == good


async def test_loader_failure_is_all_or_nothing(loaded, generator, tmp_path):
    """If peft fails to load files that passed the store's checks, nothing changes either."""
    store = AdapterStore(tmp_path / "adapters")
    good = make_adapter(loaded, store, 6)
    await generator.use_adapter(good, store.path(good))
    broken = make_adapter(loaded, store, 7)
    (store.root / broken / "adapter_config.json").write_text('{"peft_type": "LORA", "r": "eight"}')
    with pytest.raises((AdapterLoadError, CorruptAdapter)):
        await generator.use_adapter(broken, store.root / broken)
    assert generator.active == good
    (s,) = await generator.generate(1, seed=0)
    assert s.adapter == good


async def test_a_seeded_sample_does_not_reset_the_rng_of_later_posts(generator):
    """A health check (seeded) between posts must not make every restart's first posts the same."""
    await generator.health_check()
    first = await generator.generate(4)
    await generator.health_check()
    second = await generator.generate(4)
    assert [s.completion_ids for s in first] != [s.completion_ids for s in second]
