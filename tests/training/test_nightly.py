import pytest

from bot.adapters.store import BASE, AdapterStore
from bot.training import nightly
from bot.training.nightly import run_training
from bot.training.runner import TrainingFailed, TrainingRunner
from tests.support.data import DAY, OPEN_GATE, seed_posts
from tests.support.storage import post_by_message

pytestmark = pytest.mark.slow

# a gate that passes any candidate: for tests about what happens after the gate


async def test_one_run_trains_commits_and_promotes(tiny_settings, storage):
    """A run over settled posts writes a new adapter version that differs from the base, and marks the posts."""
    settings = tiny_settings(KILROY_EPOCHS="1", **OPEN_GATE)
    store = AdapterStore(settings.adapters_dir)
    await seed_posts(settings, storage)
    events = []
    runner = TrainingRunner(settings, storage, store, in_process=True)
    result = await runner.run("test", events.append, now=DAY)
    assert result.status == "done" and result.accepted and result.promoted and result.adapter == "v0001"
    assert store.current() == "v0001"
    assert any(e.stage == "train" for e in events)
    import math

    assert math.isfinite(result.metrics["loss"]) and result.metrics["kl"] >= 0
    # the adapter's weights moved away from zero-initialised LoRA B
    from safetensors.torch import load_file

    tensors = load_file(str(store.path("v0001") / "adapter_model.safetensors"))
    assert any(float(t.abs().sum()) > 0 for k, t in tensors.items() if "lora_B" in k)
    assert await storage.post_records(untrained_only=True) == []
    (run,) = await storage.runs()
    assert run.status == "done" and run.adapter == "v0001" and run.stage == "promoted"


async def test_the_worker_step_alone_never_moves_the_pointer(tiny_settings, storage):
    """run_training commits and claims; only the promotion sequence marks posts trained and moves the pointer."""
    settings = tiny_settings(KILROY_EPOCHS="1", **OPEN_GATE)
    store = AdapterStore(settings.adapters_dir)
    await seed_posts(settings, storage)
    result = await run_training(settings, storage, store, now=DAY)
    assert result.accepted and not result.promoted and store.current() == BASE
    (run,) = await storage.runs()
    assert run.stage == "committed" and run.status == "running"
    assert await storage.post_records(untrained_only=True) == []  # claimed: no other run may take them


async def test_gate_failure_keeps_adapter_but_not_active(tiny_settings, storage):
    """A candidate the gate refuses is stored with its reason but the serving adapter stays."""
    settings = tiny_settings(KILROY_EPOCHS="3", KILROY_LEARNING_RATE="0.05", KILROY_GATE_MAX_KL="0.000001")
    store = AdapterStore(settings.adapters_dir)
    await seed_posts(settings, storage)
    result = await TrainingRunner(settings, storage, store, in_process=True).run("test", now=DAY)
    assert result.status == "done" and not result.promoted and "KL" in result.reason
    assert store.current() == BASE
    assert store.info(result.adapter).meta["accepted"] is False


async def test_unsettled_posts_are_not_used(tiny_settings, storage):
    """Posts younger than the settle window wait; the run is skipped with a reason."""
    settings = tiny_settings()
    store = AdapterStore(settings.adapters_dir)
    await seed_posts(settings, storage, at=DAY - 3600)
    result = await run_training(settings, storage, store, now=DAY)
    assert result.status == "skipped" and "settled" in result.reason
    assert len(await storage.post_records(untrained_only=True)) == 16


async def test_training_crash_leaves_active_adapter_and_data(tiny_settings, storage, monkeypatch):
    """A crash mid-training changes nothing: same active adapter, posts still untrained, run marked failed."""
    settings = tiny_settings(KILROY_EPOCHS="1")
    store = AdapterStore(settings.adapters_dir)
    await seed_posts(settings, storage)

    def boom(*args, **kwargs):
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr("bot.training.trainer.train_adapter", boom)
    with pytest.raises(TrainingFailed, match="out of memory"):
        await TrainingRunner(settings, storage, store, in_process=True).run("test", now=DAY)
    assert store.current() == BASE and store.names() == []
    assert not [p for p in store.root.iterdir() if p.name.startswith(".tmp")]
    assert len(await storage.post_records(untrained_only=True)) == 16
    (run,) = await storage.runs()
    assert run.status == "failed" and "out of memory" in run.message
    assert nightly  # module imported for monkeypatch path


async def test_best_of_n_posts_train_on_every_candidate_and_the_reward_model_is_saved(tiny_settings, storage):
    """A best-of-N post contributes all its candidates (policy draws), not the picked one; the fit is served."""
    from bot.engine.compose import Candidate
    from bot.training.reward_model import REWARD_MODEL_FILE, RewardModelFile

    settings = tiny_settings(KILROY_EPOCHS="1", KILROY_REWARD_MAX_P="1", **OPEN_GATE)
    samples = await seed_posts(settings, storage)
    first = await post_by_message(storage, 1)
    cands = [Candidate(s.text, s.completion_ids, 1.0, True) for s in samples[:3]]
    await storage.add_candidates(first.id, cands, chosen=0)
    store = AdapterStore(settings.adapters_dir)
    result = await run_training(settings, storage, store, now=DAY)
    meta = store.info(result.adapter).meta
    assert meta["data"]["posts"] == 16 and meta["metrics"]["examples"] == 16 - 1 + 3
    assert (await RewardModelFile(settings.adapters_dir / REWARD_MODEL_FILE).current()).posts == 16
    assert await storage.post_records(untrained_only=True) == []  # the post itself is claimed once
