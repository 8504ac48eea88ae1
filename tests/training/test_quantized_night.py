"""A whole night on a 4-bit base, on CPU: train (KL against the same 4-bit base, adapter disabled), gate, promote;
the adapter it writes is a standard peft folder that also serves on the fp32 base."""

import math

import pytest

from bot.adapters.store import BASE, AdapterStore
from bot.config.settings import ModelSettings
from bot.engine.generator import Generator, SamplingParams
from bot.engine.model import load_base
from bot.training.runner import TrainingRunner
from tests.support.data import DAY, OPEN_GATE, seed_posts

pytestmark = pytest.mark.slow


async def test_4bit_night_trains_passes_the_gate_promotes_and_serves_on_fp32(tiny_settings, storage, caplog):
    """The nightly run on the 4-bit tiny model trains, the gate passes it with its reason, it is promoted, and the
    adapter it saved loads and generates on the full-precision base too."""
    caplog.set_level("INFO")
    settings = tiny_settings(KILROY_QUANTIZATION="4bit", KILROY_EPOCHS="1", **OPEN_GATE)
    store = AdapterStore(settings.adapters_dir)
    await seed_posts(settings, storage)
    result = await TrainingRunner(settings, storage, store, in_process=True).run("test", now=DAY)
    assert "quantization=4bit" in caplog.text
    assert result.status == "done" and result.accepted and result.promoted and store.current() == "v0001"
    assert result.reason.startswith("KL ") and result.metrics["kl"] >= 0 and math.isfinite(result.metrics["loss"])
    fp32 = load_base(ModelSettings(name=settings.model.name, quantization="none"), settings.data_dir, device="cpu")
    assert fp32.quantization == "none"
    g = Generator(fp32, SamplingParams(max_new_tokens=12))
    try:
        await g.use_adapter("v0001", store.path("v0001"))
        await g.health_check()
        assert (await g.generate(2, seed=0))[0].adapter == "v0001"
    finally:
        await g.close()


async def test_4bit_night_refused_by_the_gate_says_why(tiny_settings, storage):
    """A 4-bit candidate that drifts past the KL bound is kept on disk with the reason, and never served."""
    settings = tiny_settings(
        KILROY_QUANTIZATION="4bit", KILROY_EPOCHS="2", KILROY_LEARNING_RATE="0.05", KILROY_GATE_MAX_KL="0.000001"
    )
    store = AdapterStore(settings.adapters_dir)
    await seed_posts(settings, storage)
    result = await TrainingRunner(settings, storage, store, in_process=True).run("test", now=DAY)
    assert result.status == "done" and not result.promoted and "KL to base" in result.reason
    assert store.current() == BASE and store.info(result.adapter).meta["accepted"] is False
