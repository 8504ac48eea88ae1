"""The promotion sequence survives a crash at every step, and one training runs at a time across processes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap

import pytest

from bot.adapters.promotion import Promoter
from bot.adapters.store import BASE, AdapterStore
from bot.storage import NewPost, Storage
from bot.training.lock import TrainingBusy, TrainingLock
from bot.training.result import Progress
from bot.training.runner import TrainingFailed, TrainingRunner, child_env


class Crash(Exception):
    """Stands for the process dying at a step."""


def write_version(store: AdapterStore) -> str:
    """A committed adapter version with valid (tiny) safetensors files, as the worker writes one."""
    import torch
    from safetensors.torch import save_file

    tmp = store.new_temp_dir()
    save_file({"base_model.model.lora_A.weight": torch.zeros(2, 2)}, str(tmp / "adapter_model.safetensors"))
    (tmp / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 2}))
    return store.commit(tmp, {"created_at": 1.0, "parent": BASE, "promoted": True})


async def committed_run(storage: Storage, store: AdapterStore, posts: int = 5) -> tuple[int, str, list[int]]:
    """The state the worker leaves: a run at stage 'committed', its posts claimed, the pointer untouched."""
    ids = [
        await storage.add_post(NewPost(channel_id=1, text=f"post {i}", adapter=BASE, created_at=i, message_id=i + 1))
        for i in range(posts)
    ]
    run_id = await storage.start_run("nightly", at=10.0)
    name = write_version(store)
    await storage.commit_run(run_id, adapter=name, accepted=True, message="gate passed", metrics={}, post_ids=ids)
    return run_id, name, ids


class Live:
    """The serving model: which adapter is loaded and active."""

    def __init__(self, active: str = BASE) -> None:
        self.active = active

    async def swap(self, name: str) -> None:
        self.active = name


@pytest.mark.parametrize("step", ["committed", "marked", "swapped", "pointer"])
async def test_a_crash_at_any_step_is_finished_after_a_restart(tmp_path, step):
    """Crash after commit / after marking / after the swap / before the pointer's last write: after a restart no
    post is trained twice, pointer and live adapter agree, and the run is closed with its reason."""
    store = AdapterStore(tmp_path / "adapters")
    async with Storage.open(tmp_path / "k.db") as storage:
        run_id, name, ids = await committed_run(storage, store)
        live = Live()

        def fault(at: str) -> None:
            if at == step:
                raise Crash(at)

        if step != "committed":  # 'committed': the bot died before it even started the sequence
            with pytest.raises(Crash):
                await Promoter(storage, store, swap=live.swap, fault=fault).apply(run_id)

    # restart: a new process reconciles before it loads anything, then serves what the pointer names
    async with Storage.open(tmp_path / "k.db") as storage:
        fixed = await Promoter(storage, store).reconcile()
        assert fixed, "the interrupted sequence was noticed"
        restarted_live = Live(store.current())
        assert restarted_live.active == store.current() == name
        (run,) = await storage.runs()
        assert run.status == "done" and run.stage == "promoted" and run.message == "gate passed"
        records = await storage.post_records()
        assert {r.post.id for r in records if r.post.trained_run == run_id and r.post.trained_at} == set(ids)
        assert await storage.post_records(untrained_only=True) == []  # nothing left for a second run
        # and reconciling again changes nothing (idempotent)
        assert await Promoter(storage, store).reconcile() == []


async def test_a_refused_candidate_never_moves_the_pointer(tmp_path):
    """The gate said no: posts are marked (the data was used), the candidate is kept, base keeps serving."""
    store = AdapterStore(tmp_path / "adapters")
    async with Storage.open(tmp_path / "k.db") as storage:
        ids = [await storage.add_post(NewPost(channel_id=1, text="x", adapter=BASE, created_at=1, message_id=1))]
        run_id = await storage.start_run("nightly", at=2.0)
        name = write_version(store)
        await storage.commit_run(run_id, adapter=name, accepted=False, message="KL too high", metrics={}, post_ids=ids)
        result = await Promoter(storage, store, swap=Live().swap).apply(run_id)
        assert not result.promoted and not result.accepted and store.current() == BASE
        assert (await storage.get_run(run_id)).stage == "kept"


async def test_a_swap_failure_keeps_the_old_adapter_and_the_pointer(tmp_path):
    """Disk and live model never disagree: if the new adapter cannot be served, the pointer does not move."""
    store = AdapterStore(tmp_path / "adapters")

    async def broken(name: str) -> None:
        raise RuntimeError("NaN in weights")

    async with Storage.open(tmp_path / "k.db") as storage:
        run_id, _name, _ = await committed_run(storage, store)
        result = await Promoter(storage, store, swap=broken).apply(run_id)
        assert not result.promoted and "NaN" in result.reason and store.current() == BASE
        run = await storage.get_run(run_id)
        assert run.stage == "refused" and run.status == "done"
        assert await Promoter(storage, store).reconcile() == []  # a refusal is final, not 'unfinished'


async def test_stale_runs_and_temp_folders_are_cleaned_under_the_lock(tmp_path):
    store = AdapterStore(tmp_path / "adapters")
    async with Storage.open(tmp_path / "k.db") as storage:
        await storage.start_run("nightly", at=1.0)  # its worker died before committing
        store.root.mkdir(parents=True, exist_ok=True)
        (store.root / ".tmp-deadbeef").mkdir()
        fixed = await Promoter(storage, store).reconcile()
        assert len(fixed) == 2
        (run,) = await storage.runs()
        assert run.status == "failed" and "stopped before" in run.message
        assert not list(store.root.glob(".tmp-*"))


HOLD_LOCK = textwrap.dedent(
    """
    import sys, time
    from bot.training.lock import TrainingLock
    lock = TrainingLock(sys.argv[1]); lock.acquire("the bot's nightly training")
    print("held", flush=True); time.sleep(60)
    """
)


@pytest.fixture
def other_process_holds_the_lock(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(tmp_path / "adapters")], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    yield proc
    proc.kill()
    proc.wait()


def test_kilroy_train_refuses_while_another_process_trains(tmp_path, other_process_holds_the_lock, capsys):
    import os

    from bot.cli.main import main

    env = {"KILROY_DATA_DIR": str(tmp_path / "data"), "KILROY_ADAPTERS_DIR": str(tmp_path / "adapters")}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        assert main(["--env-file", "", "train"]) == 1
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    err = capsys.readouterr().err
    assert "already in progress" in err and "nightly training" in err


async def test_the_bot_refuses_a_second_training_across_processes(make_settings, storage, other_process_holds_the_lock):
    settings = make_settings()
    runner = TrainingRunner(settings, storage, AdapterStore(settings.adapters_dir))
    assert runner.busy
    with pytest.raises(TrainingBusy, match="nightly training"):
        await runner.run("nightly")


def test_the_lock_is_released_when_its_holder_dies(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    assert TrainingLock(tmp_path).is_locked()
    proc.kill()
    proc.wait()
    with TrainingLock(tmp_path).hold("next night") as lock:
        assert lock.held


async def test_a_hung_worker_is_killed_and_recorded(make_settings, storage, tmp_path):
    settings = make_settings(KILROY_TRAIN_TIMEOUT_MINUTES="0.02")  # 1.2 s
    # the worker opens its run, then hangs
    hang = (
        "import sqlite3, sys, time; sys.stdin.read(); "
        f"db = sqlite3.connect({str(tmp_path / 'kilroy.db')!r}, isolation_level=None); "
        "db.execute(\"INSERT INTO training_runs (reason, status, started_at) VALUES ('nightly', 'running', 1)\"); "
        "time.sleep(120)"
    )
    runner = TrainingRunner(
        settings, storage, AdapterStore(settings.adapters_dir), command=[sys.executable, "-c", hang]
    )
    started = asyncio.get_running_loop().time()
    with pytest.raises(TrainingFailed, match="KILROY_TRAIN_TIMEOUT_MINUTES"):
        await runner.run("nightly")
    assert asyncio.get_running_loop().time() - started < 30
    (run,) = await storage.runs()
    assert run.status == "failed" and "KILROY_TRAIN_TIMEOUT_MINUTES" in run.message
    assert not runner.busy


def test_the_worker_environment_holds_no_token_and_no_settings():
    env = child_env({"PATH": "/bin", "DISCORD_TOKEN": "secret", "KILROY_KL_BETA": "9", "HF_HOME": "/cache"})
    assert "DISCORD_TOKEN" not in env and "KILROY_KL_BETA" not in env
    assert env["PATH"] == "/bin" and env["HF_HOME"] == "/cache"


async def test_the_worker_trains_with_the_bots_settings_file_not_the_default_env(tmp_path, storage, monkeypatch):
    """`kilroy --env-file prod.env run`: the real worker process uses prod.env's values, and sees no token."""
    from bot.config.settings import load_settings

    prod = tmp_path / "prod.env"
    prod.write_text(
        f"DISCORD_TOKEN=not-for-the-worker\nKILROY_KL_BETA=0.5\nKILROY_SETTLE_HOURS=2\nKILROY_MIN_TRAIN_POSTS=999\n"
        f"KILROY_DATA_DIR={tmp_path / 'data'}\nKILROY_ADAPTERS_DIR={tmp_path / 'adapters'}\n"
        f"KILROY_DB_PATH={tmp_path / 'kilroy.db'}\n"
    )
    (tmp_path / ".env").write_text("KILROY_KL_BETA=0.1\nKILROY_SETTLE_HOURS=12\n")  # the default file: ignored
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DISCORD_TOKEN", "also-not-for-the-worker")
    settings = load_settings(prod)
    assert settings.discord.token and settings.training.kl_beta == 0.5
    events: list[Progress] = []
    async with Storage.open(settings.db_path) as db:
        runner = TrainingRunner(settings, db, AdapterStore(settings.adapters_dir))
        result = await runner.run("nightly", events.append)
    (seen,) = [e.settings for e in events if e.kind == "settings"]
    assert seen["training"]["kl_beta"] == 0.5 and seen["scoring"]["settle_hours"] == 2
    assert seen["discord"]["token"] is None
    assert result.status == "skipped" and "need 999" in result.reason
    # and the worker process's environment itself
    dump = (
        "import os, json, sys; sys.stdin.read(); print(json.dumps({'event': 'done', 'status': 'skipped', "
        "'reason': ' '.join(sorted(os.environ))}))"
    )
    async with Storage.open(settings.db_path) as db:
        runner = TrainingRunner(settings, db, AdapterStore(settings.adapters_dir), command=[sys.executable, "-c", dump])
        names = (await runner.run("nightly")).reason.split()
    assert "DISCORD_TOKEN" not in names and not [n for n in names if n.startswith("KILROY_")]
