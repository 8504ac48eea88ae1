"""The queue's moving parts on a real PostgreSQL, with the training itself faked (no model): a job's body relays
progress and the result, a failure reaches the asker, a dead worker's job is retried once and then failed, the
asker finishes a candidate the worker left for an A/B trial, and a bot catches up a promotion it missed."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest

from bot.config.settings import Settings
from bot.domain.records import RunResult
from bot.training.queue import PROMOTIONS_CHANNEL, QUEUE, JobQueue, QueueRunner, psycopg_url
from bot.training.queue_worker import JobRunner, retry_stalled
from bot.training.result import Progress
from bot.training.runner import TrainingFailed


@pytest.fixture
def url(postgres_server):
    url = postgres_server.new_database()
    yield url
    postgres_server.drop_database(url)


class FakeRunner:
    """A training runner that reports two steps and returns `result` (or raises `error`)."""

    def __init__(self, result: RunResult | None = None, error: Exception | None = None) -> None:
        self.result, self.error, self.reasons = result, error, []

    async def run(self, reason, on_progress=None, *, now=None, backup=None) -> RunResult:
        self.reasons.append(reason)
        on_progress(Progress("start", run_id=7, posts=16, parent="base"))
        on_progress(Progress("progress", stage="train", step=1, of=2, loss=0.5))
        if self.error is not None:
            raise self.error
        on_progress(Progress("progress", stage="train", step=2, of=2, loss=0.4))
        return self.result


async def work_once(queue: JobQueue, url: str, runner: FakeRunner) -> None:
    """Run the queue's jobs in this process until it is empty, as `kilroy worker --once` would."""
    await queue.app.run_worker_async(
        queues=[QUEUE],
        wait=False,
        install_signal_handlers=False,
        additional_context={"train": JobRunner(queue.app, url, lambda _community: runner)},
    )


async def until_enqueued(queue: JobQueue) -> int:
    for _ in range(200):
        if (job := await queue.pending(None)) is not None:
            return job
        await asyncio.sleep(0.02)
    raise AssertionError("nothing was enqueued")


async def stop(task: asyncio.Task) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def promotions(url: str, got: list[dict], ready: asyncio.Event) -> None:
    import psycopg

    async with await psycopg.AsyncConnection.connect(psycopg_url(url), autocommit=True) as conn:
        await conn.execute(f"LISTEN {PROMOTIONS_CHANNEL}")
        ready.set()
        async for note in conn.notifies():
            got.append(json.loads(note.payload))


async def test_a_jobs_progress_and_result_reach_the_asker_and_its_promotion_is_announced(url):
    """The worker's events come back in order; a promoted adapter is announced on kilroy_adapters."""
    done = RunResult("done", 7, "v0001", "base", accepted=True, promoted=True, reason="ok")
    got, ready = [], asyncio.Event()
    listener = asyncio.create_task(promotions(url, got, ready))
    await ready.wait()
    async with JobQueue.open(url) as queue:
        events = []
        asking = asyncio.create_task(QueueRunner(queue).run("/retrain", events.append))
        await until_enqueued(queue)
        await work_once(queue, url, FakeRunner(done))
        result = await asyncio.wait_for(asking, 10)
    assert result == done
    assert [(e.kind, e.step) for e in events] == [("start", None), ("progress", 1), ("progress", 2)]
    for _ in range(100):
        if got:
            break
        await asyncio.sleep(0.02)
    await stop(listener)
    assert got == [{"community": None, "adapter": "v0001", "run_id": 7}]


async def test_a_failed_training_fails_the_job_and_the_asker_hears_why(url):
    """An exception in the training reaches /retrain as TrainingFailed with its message; nothing is announced."""
    async with JobQueue.open(url) as queue:
        asking = asyncio.create_task(QueueRunner(queue).run("/retrain"))
        job = await until_enqueued(queue)
        await work_once(queue, url, FakeRunner(error=RuntimeError("CUDA out of memory (simulated)")))
        with pytest.raises(TrainingFailed, match="CUDA out of memory"):
            await asyncio.wait_for(asking, 10)
        assert await queue.status(job) == "failed"


async def test_with_trials_on_the_asker_finishes_the_promotion_and_announces_it(url):
    """A gate-passing candidate the worker left unserved (A/B trials on) goes through the asker's promotion hook."""
    marked = RunResult("done", 7, "v0001", "base", accepted=True, promoted=False, reason="its A/B trial starts")
    guarded = RunResult("done", 7, "v0001", "base", accepted=True, promoted=False, trial=True, reason="guard")
    applied = []

    async def promote(run_id: int) -> RunResult:
        applied.append(run_id)
        return guarded

    got, ready = [], asyncio.Event()
    listener = asyncio.create_task(promotions(url, got, ready))
    await ready.wait()
    async with JobQueue.open(url) as queue:
        asking = asyncio.create_task(QueueRunner(queue, promote=promote).run("nightly"))
        await until_enqueued(queue)
        await work_once(queue, url, FakeRunner(marked))
        assert await asyncio.wait_for(asking, 10) == guarded
    for _ in range(100):
        if got:
            break
        await asyncio.sleep(0.02)
    await stop(listener)
    assert applied == [7] and got == [{"community": None, "adapter": "v0001", "run_id": 7}]


async def test_a_dead_workers_job_is_retried_once_then_failed(url):
    """A job left running by a worker that vanished goes back to the queue once; the second time it fails, and
    the asker is told."""
    async with JobQueue.open(url) as queue:
        job = await queue.enqueue(None, "nightly")

        async def die() -> None:  # as a SIGKILLed worker leaves it: running, its worker gone
            await queue.app.connector.execute_query_async(
                "UPDATE procrastinate_jobs SET status = 'doing', worker_id = NULL WHERE id = %(id)s", id=job
            )

        await die()
        assert await retry_stalled(queue.app, 1) == [job]
        assert await queue.status(job) == "todo"
        await die()
        assert await retry_stalled(queue.app, 1) == []
        assert await queue.status(job) == "failed"
        with pytest.raises(TrainingFailed, match="died twice"):
            await queue.wait(job)


async def test_a_bot_catches_up_a_promotion_it_missed(url, make_settings):
    """On (re)connecting, the listener serves the shared pointer's adapter if it differs from what serves."""
    from bot.services import follow_promotions

    class Store:
        def current(self) -> str:
            return "v0002"

    class Serving:
        store, active = Store(), "v0001"

        async def activate(self, name: str) -> float:
            self.active = name
            return 0.0

    settings: Settings = make_settings(KILROY_DATABASE_URL=url, KILROY_TRAINING_QUEUE="postgres")
    serving, ready = Serving(), asyncio.Event()
    task = asyncio.create_task(follow_promotions(settings, lambda _: serving, ready=ready))  # type: ignore[arg-type]
    await asyncio.wait_for(ready.wait(), 10)
    await stop(task)
    assert serving.active == "v0002"


def test_the_queue_needs_the_database_url(make_settings):
    """KILROY_TRAINING_QUEUE=postgres without KILROY_DATABASE_URL is a configuration error naming both."""
    from bot.config.settings import ConfigError

    with pytest.raises(ConfigError, match="KILROY_DATABASE_URL"):
        make_settings(KILROY_TRAINING_QUEUE="postgres")
    assert make_settings().training.queue == "local"


async def test_the_doctor_checks_the_queue_and_its_workers(url, make_settings):
    """kilroy doctor: local is fine; with the queue, no live worker is a failure naming `kilroy worker`, a worker's
    heartbeat makes it pass, and an unreachable database names KILROY_DATABASE_URL."""
    from bot.ops.doctor import queue_check

    assert queue_check(make_settings()).ok
    settings = make_settings(KILROY_DATABASE_URL=url, KILROY_TRAINING_QUEUE="postgres")
    async with JobQueue.open(url) as queue:
        await queue.enqueue(None, "nightly")
        idle = await asyncio.to_thread(queue_check, settings)
        assert not idle.ok and "kilroy worker" in idle.fix and "1 job(s) wait" in idle.detail
        await queue.app.job_manager.register_worker()
        assert (await asyncio.to_thread(queue_check, settings)).ok
    missing = url.replace("/kilroy_test", "/no_such_db")
    gone = make_settings(KILROY_DATABASE_URL=missing, KILROY_TRAINING_QUEUE="postgres")
    down = await asyncio.to_thread(queue_check, gone)
    assert not down.ok and "KILROY_DATABASE_URL" in down.fix


async def test_a_communitys_job_is_trained_on_its_lineage_and_announced_for_it(url):
    """A job carries its community: the worker trains that community's runner (with the night's backup choice), and
    the promotion names the community, so each bot swaps that server's adapter only."""
    done = RunResult("done", 7, "v0001", "base", accepted=True, promoted=True, reason="ok")
    asked: list[tuple[str | None, bool | None]] = []

    class Runner(FakeRunner):
        async def run(self, reason, on_progress=None, *, now=None, backup=None) -> RunResult:
            asked.append((community_of[0], backup))
            return await super().run(reason, on_progress, now=now)

    community_of: list[str | None] = [None]

    def runner_for(community):
        community_of[0] = community
        return Runner(done)

    got, ready = [], asyncio.Event()
    listener = asyncio.create_task(promotions(url, got, ready))
    await ready.wait()
    async with JobQueue.open(url) as queue:
        asking = asyncio.create_task(QueueRunner(queue, community="g5").run("nightly", backup=False))
        for _ in range(200):
            if await queue.pending("g5") is not None:
                break
            await asyncio.sleep(0.02)
        await queue.app.run_worker_async(
            queues=[QUEUE],
            wait=False,
            install_signal_handlers=False,
            additional_context={"train": JobRunner(queue.app, url, runner_for)},
        )
        assert await asyncio.wait_for(asking, 10) == done
    for _ in range(100):
        if got:
            break
        await asyncio.sleep(0.02)
    await stop(listener)
    assert asked == [("g5", False)]
    assert got == [{"community": "g5", "adapter": "v0001", "run_id": 7}]


async def test_the_bot_enqueues_per_community_and_the_worker_trains_each_lineage(url, make_settings):
    """Wiring (bot/services.py): with the queue, each community's runner enqueues jobs carrying that community (the
    night and /retrain go through `Communities.runner`); `kilroy worker`'s runner of a job is that lineage's own, and
    a job without a community trains the commons."""
    from bot.domain.community import COMMONS
    from bot.services import Communities, open_worker_services, prepare_lineages
    from bot.storage import Storage

    settings: Settings = make_settings(KILROY_DATABASE_URL=url, KILROY_TRAINING_QUEUE="postgres")
    async with Storage.open(settings.database) as storage, JobQueue.open(url) as queue:
        lineages = await prepare_lineages(settings, storage)
        communities = Communities(settings, storage, lineages, None, queue=queue)
        runner = communities.runner("g5")
        assert isinstance(runner, QueueRunner) and runner.community == "g5"
        assert communities.runner("g5") is runner and communities.runner(COMMONS).community == COMMONS
        assert communities.night.runner_for("g6").community == "g6"
        assert await communities.reconcile() == []  # the workers finish interrupted promotions
    async with open_worker_services(settings) as worker:
        g5 = worker.runner_for("g5")
        assert g5.community == "g5" and g5.store.root == lineages.store("g5").root
        assert worker.runner_for(None).community == COMMONS
