"""`kilroy worker`: takes training jobs from the queue (bot.training.queue) and runs them, one at a time.

Each job runs the bot's own training path (`TrainingRunner`, in this process: the worker is the training's own
process) for the job's community: reconcile, train, gate, commit, promote (files checked, pointer moved in the
shared adapters folder), then a NOTIFY that every bot process answers with a hot swap. Progress and the result
go to `kilroy_training_events`, where the process that asked reads them.

Locks, all the database's own:
- procrastinate's job `lock` (the community): two jobs of one community never run at once, on any worker;
- a PostgreSQL advisory lock held for the whole run (`TRAINING_LOCK`): one training at a time on one database,
  the cross-machine form of the local `.training.lock` (whose reconcile step assumes no other run is live); the
  server drops it when the worker's connection dies, so a killed worker never leaves it behind.

A worker killed mid-run (SIGKILL, power loss) stops sending heartbeats; after KILROY_WORKER_STALLED_SECONDS any
worker (this one at its next start included) retries its job once, and fails it the second time. Nothing of the
dead run is used: its candidate was never committed (the run is closed by the next reconcile and its `.tmp-*`
folder removed), or was committed with its posts claimed and the retry's reconcile finishes its promotion.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from bot.config.settings import Settings
from bot.training.lock import TrainingBusy
from bot.training.queue import QUEUE, TASK, add_event, ensure_schema, notify_promoted, psycopg_url, queue_app
from bot.training.result import Progress

if TYPE_CHECKING:
    import procrastinate

    from bot.training.runner import TrainingRunner

log = logging.getLogger(__name__)

EVENTS_KEEP_DAYS = 7  # a job's progress rows are kept this long
TRAINING_LOCK = 0x4B54524E  # 'KTRN': one training at a time on one database
RunnerFor = Callable[[str | None], "TrainingRunner"]


async def retry_stalled(app: procrastinate.App, seconds: float, *, mine: int | None = None) -> list[int]:
    """Retry, once, each training job whose worker sent no heartbeat for `seconds`; fail it the second time.
    `mine`, the job this worker runs, is never among them: a training that starves our own heartbeat (a busy
    CPU) must not look dead to ourselves."""
    from procrastinate.jobs import Status

    retried = []
    for job in await app.job_manager.get_stalled_jobs(task_name=TASK, seconds_since_heartbeat=seconds):
        assert job.id is not None
        if job.id == mine:
            continue
        try:
            if job.attempts >= 1:
                await app.job_manager.finish_job(job, status=Status.FAILED, delete_job=False)
                message = "its worker died twice (no heartbeat); not retried again"
                await add_event(app, job.id, Progress("error", message=message).to_json())
                log.error("training job %d failed: %s", job.id, message)
            else:
                await app.job_manager.retry_job(job)
                retried.append(job.id)
                log.warning("training job %d: its worker stopped sending heartbeats; retrying it once", job.id)
        except Exception as exc:  # another worker got there first
            log.info("stalled training job %d: %s", job.id, exc)
    return retried


@contextlib.asynccontextmanager
async def training_lock(url: str, *, wait: float = 2.0) -> AsyncIterator[None]:
    """Hold the database-wide training lock (a PostgreSQL advisory lock on its own connection), waiting for it."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(psycopg_url(url), autocommit=True) as conn:
        while True:
            cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (TRAINING_LOCK,))
            row = await cur.fetchone()
            if row and row[0]:
                break
            await asyncio.sleep(wait)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                await conn.execute("SELECT pg_advisory_unlock(%s)", (TRAINING_LOCK,))


class JobRunner:
    """The body of a training job: the lock, the run with its events relayed, the promotion notice."""

    def __init__(self, app: procrastinate.App, url: str, runner_for: RunnerFor, *, busy_wait: float = 2.0) -> None:
        self.app, self.url, self.runner_for, self.busy_wait = app, url, runner_for, busy_wait
        self.running: int | None = None  # the job being run now

    async def __call__(
        self, context: procrastinate.JobContext, *, community: str | None = None, reason: str = "queued",
        now: float | None = None, backup: bool | None = None,
    ) -> None:  # fmt: skip
        job_id = context.job.id
        assert job_id is not None
        self.running = job_id
        try:
            await self._run(job_id, context.job.attempts, community, reason, now, backup)
        finally:
            self.running = None

    async def _run(
        self,
        job_id: int,
        attempts: int,
        community: str | None,
        reason: str,
        now: float | None,
        backup: bool | None = None,
    ) -> None:
        loop = asyncio.get_running_loop()
        pending: asyncio.Queue[Progress | None] = asyncio.Queue()

        def emit(event: Progress) -> None:  # called from the training thread, or from the loop
            loop.call_soon_threadsafe(pending.put_nowait, event)

        async def relay() -> None:
            while (event := await pending.get()) is not None:
                try:
                    await add_event(self.app, job_id, event.to_json())
                except Exception:
                    log.warning("could not record a progress event of job %d", job_id, exc_info=True)

        relaying = asyncio.create_task(relay())
        log.info("training job %d (%s, attempt %d): %s", job_id, community or "the bot", attempts + 1,
                 reason)  # fmt: skip
        try:
            runner = self.runner_for(community)
            async with training_lock(self.url):
                while True:
                    try:
                        # None: a 'nightly' job takes the nightly backup; a night over many communities asks for it
                        # before its first job only (bot/training/night.py)
                        result = await runner.run(reason, emit, now=now, backup=backup)
                        break
                    except TrainingBusy as exc:  # `kilroy train` on this machine's adapters folder
                        log.info("training job %d waits: %s", job_id, exc)
                        await asyncio.sleep(self.busy_wait)
        except Exception as exc:
            pending.put_nowait(None)
            await relaying
            await add_event(self.app, job_id, Progress("error", message=f"{type(exc).__name__}: {exc}").to_json())
            raise
        pending.put_nowait(None)
        await relaying
        if result.promoted and result.adapter is not None:
            await notify_promoted(self.app, community, result.adapter, result.run_id)
        await add_event(self.app, job_id, Progress("done", result=result).to_json())
        log.info("training job %d: %s", job_id, result.status if result.adapter is None else result.adapter)


async def run_worker(
    settings: Settings,
    runner_for: RunnerFor,
    *,
    name: str | None = None,
    once: bool = False,
    ready: Callable[[], None] | None = None,
) -> None:
    """Take training jobs until stopped (SIGINT/SIGTERM: the running job finishes first); `once`: until the queue
    is empty. Retries dead workers' jobs at start and every half KILROY_WORKER_STALLED_SECONDS."""
    url = settings.database_url.get()
    if not url:
        raise ValueError("kilroy worker takes its jobs from PostgreSQL: set KILROY_DATABASE_URL")
    stalled = settings.training.stalled_seconds
    await ensure_schema(url)
    app = queue_app(url)
    job_runner = JobRunner(app, url, runner_for)
    async with app.open_async():
        await retry_stalled(app, stalled)
        await app.connector.execute_query_async(  # the asker read them long ago
            "DELETE FROM kilroy_training_events WHERE at < %(before)s", before=time.time() - EVENTS_KEEP_DAYS * 86400
        )

        async def reap() -> None:
            while True:
                await asyncio.sleep(stalled / 2)
                try:
                    await retry_stalled(app, stalled, mine=job_runner.running)
                except Exception:
                    log.warning("could not look for stalled training jobs", exc_info=True)

        reaper = asyncio.create_task(reap())
        options: dict[str, Any] = {
            "queues": [QUEUE],
            "name": name or f"{socket.gethostname()}:{os.getpid()}",
            "concurrency": 1,  # one training at a time per worker
            "wait": not once,
            "listen_notify": True,
            "fetch_job_polling_interval": 5.0,
            "delete_jobs": "never",  # a finished job stays for the asker to read (and for the operator)
            "additional_context": {"train": job_runner},
            "update_heartbeat_interval": stalled / 4,
            "stalled_worker_timeout": stalled,
        }
        if ready is not None:
            ready()
        try:
            await app.run_worker_async(**options)
        finally:
            reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reaper
