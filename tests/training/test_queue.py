"""Training as jobs (KILROY_TRAINING_QUEUE=postgres) on a real PostgreSQL: `kilroy worker` subprocesses train what
this process enqueues, the result and the promotion come back, two workers never train one community at once, and
a worker killed mid-training loses nothing and has its job retried once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.adapters.store import BASE, AdapterStore
from bot.config.settings import Settings
from bot.storage import Storage
from bot.training.lock import TrainingBusy
from bot.training.queue import TASK, JobQueue, lock_of
from bot.training.runner import TrainingFailed
from tests.support.data import DAY, OPEN_GATE, seed_posts

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def queue_env(postgres_server, tiny_model_dir, tmp_path):
    """The settings every process of a test shares (as environment variables): a fresh PostgreSQL database, the
    queue on, the shared adapters folder, the tiny model and an open gate."""
    url = postgres_server.new_database()
    env = {
        "KILROY_DATA_DIR": str(tmp_path / "data"),
        "KILROY_ADAPTERS_DIR": str(tmp_path / "adapters"),
        "KILROY_MODEL": str(tiny_model_dir),
        "KILROY_GATE_SAMPLES": "4",
        "KILROY_MAX_NEW_TOKENS": "24",
        "KILROY_REWARD_MAX_P": "1",
        "KILROY_EPOCHS": "1",
        "KILROY_DATABASE_URL": url,
        "KILROY_TRAINING_QUEUE": "postgres",
        "KILROY_WORKER_STALLED_SECONDS": "10",
        "KILROY_AB_SHARE": "0",  # the worker promotes by itself (with trials on, the asking bot does)
        **OPEN_GATE,
    }
    yield env
    postgres_server.drop_database(url)


class Workers:
    """`kilroy worker` subprocesses, stopped (SIGTERM, then SIGKILL) at the end of the test."""

    def __init__(self, env: dict[str, str], tmp_path: Path) -> None:
        self.env, self.tmp_path, self.procs = env, tmp_path, []

    def start(self, name: str, **overrides: str) -> subprocess.Popen:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KILROY_") and k != "DISCORD_TOKEN"} | {
            **self.env,
            **overrides,
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
        }
        log = open(self.tmp_path / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "worker", "--name", name],
            env=env,
            cwd=self.tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        return proc

    def log(self, name: str) -> str:
        return (self.tmp_path / f"{name}.log").read_text(errors="replace")

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture
def workers(queue_env, tmp_path):
    w = Workers(queue_env, tmp_path)
    yield w
    w.stop()


async def seeded(env: dict[str, str]) -> Settings:
    """Settled, untrained posts in the test's database; the settings this process runs with."""
    settings = Settings.from_env(env)
    async with Storage.open(settings.database) as storage:
        await seed_posts(settings, storage)
    return settings


async def job_rows(queue: JobQueue) -> list[dict]:
    return await queue.app.connector.execute_query_all_async(
        "SELECT id, status::text AS status, lock, attempts FROM procrastinate_jobs ORDER BY id"
    )


def versions(settings: Settings, pattern: str = "v0*") -> list[str]:
    """The adapter folders on disk matching `pattern`."""
    return sorted(p.name for p in (Path(settings.adapters_dir) / "commons").glob(pattern))


class FakeServing:
    """The bot's serving side as the promotion listener sees it: what serves, the pointer, a swap."""

    def __init__(self, store: AdapterStore) -> None:
        self.store, self.active, self.swaps = store, BASE, []

    async def activate(self, name: str) -> float:
        self.swaps.append(name)
        self.active = name
        return 0.001


@pytest.mark.slow
async def test_a_job_is_trained_by_a_worker_and_its_result_and_promotion_come_back(queue_env, workers):
    """The asker gets the worker's progress and result; the promotion reaches this process, which swaps."""
    from bot.services import follow_promotions

    settings = await seeded(queue_env)
    serving = FakeServing(AdapterStore(Path(settings.adapters_dir) / "commons"))
    listening = asyncio.Event()
    async with JobQueue.open(settings.database_url.get()) as queue:
        listener = asyncio.create_task(follow_promotions(settings, lambda _: serving, ready=listening))  # type: ignore[arg-type]
        await asyncio.wait_for(listening.wait(), 30)
        workers.start("w1")
        events = []
        from bot.training.queue import QueueRunner

        runner = QueueRunner(queue)
        result = await asyncio.wait_for(runner.run("/retrain", events.append, now=DAY), 600)
        assert result.status == "done" and result.promoted and result.adapter == "v0001", workers.log("w1")
        assert events[0].kind == "start" and any(e.stage == "train" for e in events)
        assert AdapterStore(Path(settings.adapters_dir) / "commons").current() == "v0001"
        deadline = time.monotonic() + 10
        while serving.active != "v0001" and time.monotonic() < deadline:  # noqa: ASYNC110 - another process swaps
            await asyncio.sleep(0.05)
        assert serving.active == "v0001" and serving.swaps == ["v0001"]
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
        (job,) = await job_rows(queue)
        assert job["status"] == "succeeded" and job["lock"] == lock_of(None)
    async with Storage.open(settings.database) as storage:
        assert await storage.post_records(untrained_only=True) == []


async def test_a_second_job_for_a_busy_community_is_refused(queue_env):
    """One waiting or running job per community: /retrain during the nightly run answers busy."""
    settings = Settings.from_env(queue_env)
    async with JobQueue.open(settings.database_url.get()) as queue:
        await queue.enqueue(None, "nightly")
        with pytest.raises(TrainingBusy):
            await queue.enqueue(None, "/retrain")
        await queue.enqueue("g2", "/retrain")  # another community is not blocked
        assert len(await job_rows(queue)) == 2


@pytest.mark.slow
async def test_two_workers_never_train_one_community_at_once(queue_env, workers):
    """Two jobs of one community (deferred straight through procrastinate, past the busy check) on two workers:
    never both running; both finish, the second finding nothing left to train."""
    settings = await seeded(queue_env)
    async with JobQueue.open(settings.database_url.get()) as queue:
        task = queue.app.tasks[TASK]
        lock = lock_of(None)
        for reason in ("first", "second"):
            await task.configure(lock=lock).defer_async(community=None, reason=reason, now=DAY)
        workers.start("w1")
        workers.start("w2")
        deadline = time.monotonic() + 600
        most_running = 0
        while time.monotonic() < deadline:
            rows = await job_rows(queue)
            most_running = max(most_running, sum(r["status"] == "doing" for r in rows))
            if all(r["status"] in ("succeeded", "failed") for r in rows):
                break
            await asyncio.sleep(0.1)
        assert [r["status"] for r in rows] == ["succeeded", "succeeded"], workers.log("w1") + workers.log("w2")
        assert most_running == 1
        first = await queue.wait(rows[0]["id"])
        second = await queue.wait(rows[1]["id"])
    assert first.promoted and second.status == "skipped"


@pytest.mark.slow
async def test_a_worker_killed_mid_training_loses_nothing_and_its_job_is_retried_once(queue_env, workers):
    """SIGKILL during the training steps: no version committed, no post marked; a second worker retries the job
    once (its heartbeat stopped) and the retry trains every post, once."""
    env = {**queue_env, "KILROY_EPOCHS": "30", "KILROY_WORKER_STALLED_SECONDS": "5"}
    settings = await seeded(env)
    store = AdapterStore(Path(settings.adapters_dir) / "commons")
    async with JobQueue.open(settings.database_url.get()) as queue:
        job = await queue.enqueue(None, "nightly", now=DAY)
        w1 = workers.start("w1", **env)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if any(e.get("stage") == "train" for _, e in await queue.events(job)):
                break
            assert w1.poll() is None, workers.log("w1")
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the worker never reported a training step:\n" + workers.log("w1"))
        w1.send_signal(signal.SIGKILL)
        w1.wait()
        assert versions(settings) == []  # nothing committed by the dead run
        async with Storage.open(settings.database) as storage:
            assert len(await storage.post_records(untrained_only=True)) == 16  # nothing claimed by the dead run
        workers.start("w2", **{**env, "KILROY_EPOCHS": "1"})
        try:
            result = await asyncio.wait_for(queue.wait(job), 600)
        except TrainingFailed:
            pytest.fail(f"{workers.log('w1')}\n---\n{workers.log('w2')}")
        assert result.promoted and result.adapter == "v0001", workers.log("w2")
        (row,) = await job_rows(queue)
        # procrastinate counts each run that ended: the killed one (ended by the retry) and the retry
        assert row["status"] == "succeeded" and row["attempts"] == 2
        assert "retrying it once" in workers.log("w2")
    assert versions(settings) == ["v0001"] and store.current() == "v0001"  # one version: the retry's
    assert versions(settings, ".tmp-*") == []
    async with Storage.open(settings.database) as storage:
        assert await storage.post_records(untrained_only=True) == []
        runs = {r.id: r for r in await storage.runs()}
        assert sorted(r.status for r in runs.values()) == ["done", "failed"]  # the dead run closed, the retry done
        assert runs[result.run_id].stage == "promoted"
