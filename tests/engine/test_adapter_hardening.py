"""Adapters are refused at the boundary when they are not what they claim (issue 12), and a broken current adapter
at start falls back to the last good one in the history."""

import json
import os
import shutil

import pytest

from bot.adapters.serving import AdapterService
from bot.adapters.store import BASE, WEIGHTS, AdapterError, AdapterStore, CorruptAdapter
from bot.engine.generator import AdapterLoadError, Generator, SamplingParams, peft_name
from tests.support.adapters import make_adapter

pytestmark = pytest.mark.slow


@pytest.fixture
def loaded(tiny_settings):
    from bot.engine.model import load_base

    s = tiny_settings()
    return load_base(s.model, s.data_dir, device="cpu")


@pytest.fixture
async def generator(loaded):
    g = Generator(loaded, SamplingParams(max_new_tokens=8))
    yield g
    await g.close()


def rename(store: AdapterStore, old: str, new: str) -> str:
    os.replace(store.root / old, store.root / new)
    return new


def rewrite_weights(store: AdapterStore, name: str, change) -> None:
    from safetensors.torch import load_file, save_file

    path = store.root / name / WEIGHTS
    tensors = load_file(str(path))
    save_file(change(tensors), str(path))


def test_names_longer_than_64_refused_cleanly(store):
    """A 300-character name is a clear AdapterError, not a raw OSError from the filesystem."""
    with pytest.raises(AdapterError, match="at most 64"):
        store.path("a" * 300)
    with pytest.raises(AdapterError, match="at most 64"):
        store.exists("a" * 65)


def test_peft_names_never_clash_and_stay_distinct():
    """Inside peft every adapter is namespaced and escaped: no module attribute, no '.', one-to-one."""
    names = ["keys", "base_model", "v0001", "v.1", "v_2e1", "a-b"]
    inner = [peft_name(n) for n in names]
    assert len(set(inner)) == len(names)
    assert all(i.startswith("kilroy_") and "." not in i and "-" not in i for i in inner)


async def test_adapter_named_keys_loads(loaded, generator, store):
    """An adapter named 'keys' (a ModuleDict method) loads and serves."""
    name = rename(store, make_adapter(loaded, store, 1), "keys")
    service = AdapterService(store, generator)
    await service.use(name)
    assert generator.active == "keys"
    (sample,) = await generator.generate(1, seed=0)
    assert sample.adapter == "keys"


def test_symlinked_folder_or_weights_outside_adapters_refused(loaded, store, tmp_path):
    """Files must live inside adapters/<name>/: a linked folder or a linked weights file is refused."""
    name = make_adapter(loaded, store, 2)
    outside = tmp_path / "elsewhere"
    shutil.copytree(store.root / name, outside)
    (store.root / "linked").symlink_to(outside, target_is_directory=True)
    with pytest.raises(CorruptAdapter, match="symbolic link"):
        store.path("linked")
    (store.root / name / WEIGHTS).unlink()
    (store.root / name / WEIGHTS).symlink_to(outside / WEIGHTS)
    with pytest.raises(CorruptAdapter, match="link"):
        store.path(name)


async def test_weights_matching_no_lora_module_refused(loaded, generator, store):
    """A file whose keys match nothing would silently serve the base: refused, the active adapter unchanged."""
    name = make_adapter(loaded, store, 3)
    rewrite_weights(store, name, lambda t: {k.replace("lora_A", "lora_Q"): v for k, v in t.items()})
    with pytest.raises(AdapterLoadError, match="does not match"):
        await AdapterService(store, generator).use(name)
    assert generator.active == BASE and not generator.is_resident(name)


async def test_nan_weights_refused(loaded, generator, store):
    """NaN (or inf) weights are refused at load, before they can break every generation."""
    name = make_adapter(loaded, store, 4)

    def poison(tensors):
        key = next(iter(tensors))
        tensors[key][0].fill_(float("nan"))
        return tensors

    rewrite_weights(store, name, poison)
    good = make_adapter(loaded, store, 5)
    service = AdapterService(store, generator)
    await service.use(good)
    with pytest.raises(AdapterLoadError, match="NaN"):
        await service.use(name)
    assert generator.active == good and store.current() == good
    (sample,) = await generator.generate(1, seed=0)  # still generating
    assert sample.adapter == good


async def test_failed_health_check_keeps_previous(loaded, generator, store, monkeypatch):
    """An adapter that loads but cannot generate is switched back out before it serves anyone."""
    good, bad = make_adapter(loaded, store, 6), make_adapter(loaded, store, 7)
    service = AdapterService(store, generator)
    await service.use(good)
    real = generator.health_check

    async def failing():
        if generator.active == bad:
            raise RuntimeError("probability tensor contains nan")
        await real()

    monkeypatch.setattr(generator, "health_check", failing)
    with pytest.raises(Exception, match="health check"):
        await service.use(bad)
    assert generator.active == good and store.current() == good


async def test_lru_eviction(loaded, store):
    """With two resident slots, switching a→b→a→c evicts b (least recently used), not a."""
    g = Generator(loaded, SamplingParams(max_new_tokens=4), keep_loaded=2)
    try:
        a, b, c = (make_adapter(loaded, store, s) for s in (11, 12, 13))
        service = AdapterService(store, g)
        for name in (a, b, a, c):
            await service.use(name)
        assert g.is_resident(a) and g.is_resident(c) and not g.is_resident(b)
    finally:
        await g.close()


async def test_broken_current_falls_back_to_last_good_at_start(loaded, store):
    """At start a corrupt current adapter falls back to the last good version in the history (not the base), and
    listings mark what really serves."""
    v1, v2, v3 = (make_adapter(loaded, store, s) for s in (21, 22, 23))
    for name in (v1, v2, v3):
        store.set_current(name)
    rewrite_weights(store, v3, lambda t: {k: v * float("nan") for k, v in t.items()})  # v3 broken
    g = Generator(loaded, SamplingParams(max_new_tokens=4))
    try:
        service = AdapterService(store, g)
        assert await service.restore() == v2
        assert g.active == v2 and store.current() == v2
        assert [i.name for i in service.list() if i.active] == [v2]
        assert store.previous() == v1  # a rollback goes further back, never to the broken v3
    finally:
        await g.close()


async def test_no_good_adapter_falls_back_to_base(loaded, store):
    v1 = make_adapter(loaded, store, 31)
    store.set_current(v1)
    (store.root / v1 / "adapter_config.json").write_text(json.dumps({"peft_type": "nonsense"}))
    g = Generator(loaded, SamplingParams(max_new_tokens=4))
    try:
        service = AdapterService(store, g)
        assert await service.restore() == BASE
        assert [i.name for i in service.list() if i.active] == [BASE]
    finally:
        await g.close()


# --- issue 23, item 8: the configured shape decides what loads, checked before any tensor is allocated ---------------


def edit_config(store: AdapterStore, name: str, **changes) -> None:
    path = store.root / name / "adapter_config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


@pytest.fixture
def no_allocation(monkeypatch):
    """Fails the test if peft builds layers or the weights are read: the check must come first."""
    import peft
    import safetensors.torch

    calls = []

    def forbidden(*args, **kwargs):
        calls.append(args)
        raise AssertionError("allocated before the shape check")

    monkeypatch.setattr(peft.PeftModel, "from_pretrained", forbidden)
    monkeypatch.setattr(safetensors.torch, "load_file", forbidden)
    return calls


async def test_huge_rank_in_config_refused_fast_without_allocating(loaded, generator, store, no_allocation):
    """Regression: `"r": 200000` with rank-4 weights took +1.5 GB and 10 s on the tiny model before it was refused
    (an out-of-memory kill on GPT-2 124M). Now the config is refused from its header, at once."""
    import resource
    import time

    name = make_adapter(loaded, store, 41)
    edit_config(store, name, r=200000)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    with pytest.raises(AdapterLoadError, match="rank 200000"):
        await AdapterService(store, generator).use(name)
    assert time.perf_counter() - started < 2
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 100_000  # KiB: no 1.5 GB detour
    assert no_allocation == [] and generator.active == BASE and not generator.is_resident(name)


async def test_rank_above_the_configured_one_refused(loaded, store, no_allocation):
    """An adapter of a rank above KILROY_LORA_RANK is refused, its config and weights consistent or not."""
    name = make_adapter(loaded, store, 42, rank=16)
    g = Generator(loaded, SamplingParams(max_new_tokens=4), lora_rank=8)
    try:
        with pytest.raises(AdapterLoadError, match=r"rank 16 is outside 1\.\.8"):
            await AdapterService(store, g).use(name)
    finally:
        await g.close()


async def test_weights_of_another_rank_than_the_config_refused(loaded, generator, store, no_allocation):
    """The config says rank 2 but the tensors are rank 4: refused from the header's shapes."""
    name = make_adapter(loaded, store, 43)
    edit_config(store, name, r=2)
    with pytest.raises(AdapterLoadError, match="expected"):
        await AdapterService(store, generator).use(name)


async def test_modules_outside_the_configured_ones_refused(loaded, store, no_allocation):
    name = make_adapter(loaded, store, 44)
    g = Generator(loaded, SamplingParams(max_new_tokens=4), lora_targets=("c_attn", "c_proj"))
    try:
        with pytest.raises(AdapterLoadError, match=r"\['c_fc'\] are not among"):
            await AdapterService(store, g).use(name)
    finally:
        await g.close()


@pytest.mark.parametrize(
    "change",
    [{"modules_to_save": ["lm_head"]}, {"use_dora": True}, {"layer_replication": [[0, 2], [0, 2]]}, {"bias": "all"}],
)
async def test_options_that_add_layers_refused(loaded, generator, store, no_allocation, change):
    name = make_adapter(loaded, store, 45)
    edit_config(store, name, **change)
    with pytest.raises(AdapterLoadError, match="refused"):
        await AdapterService(store, generator).use(name)


async def test_missing_tensor_refused_before_loading(loaded, generator, store, request):
    """The config names c_fc but the file lacks one of its tensors: refused from the header."""
    name = make_adapter(loaded, store, 46)
    rewrite_weights(store, name, lambda t: {k: v for k, v in t.items() if k != min(k for k in t if "c_fc.lora_B" in k)})
    request.getfixturevalue("no_allocation")
    with pytest.raises(AdapterLoadError, match="1 missing"):
        await AdapterService(store, generator).use(name)


async def test_lower_rank_on_a_subset_of_modules_loads_and_serves(loaded, generator, store):
    """A consistent adapter within the configured shape (rank 4 under 8, attention only) loads and serves."""
    name = make_adapter(loaded, store, 47)
    rewrite_weights(store, name, lambda t: {k: v for k, v in t.items() if ".c_attn." in k})
    edit_config(store, name, target_modules=["c_attn"])
    await AdapterService(store, generator).use(name)
    (sample,) = await generator.generate(1, seed=0)
    assert generator.active == name and sample.adapter == name
