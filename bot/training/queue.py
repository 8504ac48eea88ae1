"""Training as jobs (KILROY_TRAINING_QUEUE=postgres): the bot enqueues, `kilroy worker` trains, on any machine.

The queue is procrastinate's, in the PostgreSQL database the bot already uses (KILROY_DATABASE_URL): no second
server, no home-made queue. Every piece is the database's own:
- a job per community and reason (`kilroy.train`, queue `training`), with procrastinate's `lock` set to the
  community: two jobs of one community never run at once, across any number of workers; its `queueing_lock` too:
  one waiting job per community, so a second /retrain is refused as busy, not piled up;
- progress and the result go back to whoever asked through rows of `kilroy_training_events` (one per event, the
  asker reads them in order; a NOTIFY on `kilroy_training` wakes it early);
- a promotion reaches every bot process by a NOTIFY on `kilroy_adapters` (`listen_promotions`); a process that
  missed one (reconnecting) catches up from the adapter pointer in the shared adapters folder.

The worker side (running the jobs, retrying a dead worker's job once) is `bot.training.queue_worker`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from bot.domain.records import RunResult
from bot.training.lock import TrainingBusy
from bot.training.result import Progress
from bot.training.runner import TrainingFailed  # a failed job fails like a failed local run

if TYPE_CHECKING:
    import procrastinate

log = logging.getLogger(__name__)

TASK = "kilroy.train"
QUEUE = "training"
EVENTS_CHANNEL = "kilroy_training"  # NOTIFY payload: the job id whose events grew
PROMOTIONS_CHANNEL = "kilroy_adapters"  # NOTIFY payload: {"community", "adapter", "run_id"}
WHOLE_BOT = "*"  # the lock of a job trained for the whole bot (the layout before communities)
_SCHEMA_LOCK = 0x4B4A4F42  # 'KJOB': the advisory lock two processes installing the queue's schema take

EVENTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS kilroy_training_events (
    id bigserial PRIMARY KEY,
    job_id bigint NOT NULL,
    at double precision NOT NULL,
    event jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS kilroy_training_events_job ON kilroy_training_events (job_id, id);
"""

OnProgress = Callable[[Progress], Awaitable[None] | None]
TrainJob = Callable[..., Awaitable[None]]


def lock_of(community: str | None) -> str:
    """The procrastinate lock (and queueing lock) of a community's training jobs."""
    return f"kilroy-train:{community or WHOLE_BOT}"


def psycopg_url(url: str) -> str:
    """libpq takes the same `postgresql://` URLs as asyncpg; `postgres://` is normalised."""
    return "postgresql://" + url.split("://", 1)[1] if url.startswith("postgres://") else url


def queue_app(url: str, *, pool_size: int = 4) -> procrastinate.App:
    """The procrastinate app on `url`, with the training task declared. The task's body is the worker's
    (`additional_context["train"]`), so the bot side only ever defers it."""
    import procrastinate

    connector = procrastinate.PsycopgConnector(conninfo=psycopg_url(url), min_size=1, max_size=pool_size)
    app = procrastinate.App(connector=connector)

    # no retry on failure: a training that raises would raise again; a worker that died mid-run is retried once
    # by the worker side (bot.training.queue_worker.retry_stalled)
    @app.task(name=TASK, queue=QUEUE, pass_context=True)
    async def train(context: procrastinate.JobContext, **kwargs: Any) -> None:
        run: TrainJob = context.additional_context["train"]
        await run(context, **kwargs)

    return app


class QueueUnavailable(RuntimeError):
    """KILROY_TRAINING_QUEUE=postgres without the `scale` extra installed."""


def require_queue() -> None:
    """Raise QueueUnavailable, naming the fix, when procrastinate or psycopg is missing."""
    try:
        import procrastinate  # noqa: F401
        import psycopg  # noqa: F401
    except ImportError as exc:
        raise QueueUnavailable(
            f"KILROY_TRAINING_QUEUE=postgres needs procrastinate and psycopg ({exc}): install the scale extra "
            "(scripts/install.sh .venv scale, or pip install 'procrastinate[psycopg]'), or set "
            "KILROY_TRAINING_QUEUE=local"
        ) from exc


async def ensure_schema(url: str) -> None:
    """Install procrastinate's schema and the events table once (idempotent; safe from several processes)."""
    require_queue()
    import psycopg
    from procrastinate.schema import SchemaManager

    async with await psycopg.AsyncConnection.connect(psycopg_url(url), autocommit=True) as conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", (_SCHEMA_LOCK,))
        try:
            cur = await conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL")
            row = await cur.fetchone()
            if not (row and row[0]):
                log.info("installing the training queue's schema (procrastinate)")
                await conn.execute(SchemaManager.get_schema())  # type: ignore[arg-type]
            await conn.execute(EVENTS_SCHEMA)  # type: ignore[arg-type]
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (_SCHEMA_LOCK,))


async def add_event(app: procrastinate.App, job_id: int, event: dict[str, Any]) -> None:
    """Record one event of a job and wake whoever waits on it."""
    await app.connector.execute_query_async(
        # one statement (psycopg's extended protocol takes no second one): the row, then the wake-up
        "WITH added AS (INSERT INTO kilroy_training_events (job_id, at, event) "
        "VALUES (%(job_id)s, %(at)s, %(event)s) RETURNING job_id) "
        "SELECT pg_notify(%(channel)s, job_id::text) FROM added",
        job_id=job_id,
        at=time.time(),
        event=event,
        channel=EVENTS_CHANNEL,
    )


class JobQueue:
    """The bot's side of the queue: enqueue a community's training and follow it to its result."""

    def __init__(self, app: procrastinate.App, *, poll: float = 0.5) -> None:
        self.app = app
        self.poll = poll  # the asker reads its job's new events this often (a NOTIFY is only a hint)

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, url: str) -> AsyncIterator[JobQueue]:
        """Install the schema if needed, open the connection pool, close it on exit."""
        await ensure_schema(url)
        app = queue_app(url, pool_size=2)
        async with app.open_async():
            yield cls(app)

    async def pending(self, community: str | None) -> int | None:
        """The id of the community's waiting or running job, or None."""
        rows = await self.app.connector.execute_query_all_async(
            "SELECT id FROM procrastinate_jobs WHERE lock = %(lock)s AND status IN ('todo', 'doing') "
            "ORDER BY id LIMIT 1",
            lock=lock_of(community),
        )
        return rows[0]["id"] if rows else None

    async def enqueue(
        self, community: str | None, reason: str, *, now: float | None = None, backup: bool | None = None
    ) -> int:
        """Enqueue one training of `community` (None: the whole bot); TrainingBusy if one waits or runs."""
        from procrastinate.exceptions import AlreadyEnqueued

        if (job := await self.pending(community)) is not None:
            raise TrainingBusy(f"training job {job} for {community or 'the bot'} is queued or running")
        lock = lock_of(community)
        task = self.app.tasks[TASK]
        try:
            return await task.configure(lock=lock, queueing_lock=lock).defer_async(
                community=community, reason=reason, now=now, backup=backup
            )
        except AlreadyEnqueued:  # another process enqueued between our check and our insert
            raise TrainingBusy(f"a training job for {community or 'the bot'} is already queued") from None

    async def status(self, job_id: int) -> str:
        """procrastinate's status of a job: todo, doing, succeeded, failed, cancelled, aborted."""
        rows = await self.app.connector.execute_query_all_async(
            "SELECT status::text AS status FROM procrastinate_jobs WHERE id = %(id)s", id=job_id
        )
        return rows[0]["status"] if rows else "missing"

    async def events(self, job_id: int, after: int = 0) -> list[tuple[int, dict[str, Any]]]:
        """The job's events after event id `after`, in order."""
        rows = await self.app.connector.execute_query_all_async(
            "SELECT id, event FROM kilroy_training_events WHERE job_id = %(job)s AND id > %(after)s ORDER BY id",
            job=job_id,
            after=after,
        )
        return [(r["id"], r["event"]) for r in rows]

    async def wait(self, job_id: int, on_progress: OnProgress | None = None) -> RunResult:
        """Relay the job's events to `on_progress` until its result; TrainingFailed if it failed."""
        seen = 0
        while True:
            status = await self.status(job_id)  # read first: events written before a final status are all seen
            for event_id, raw in await self.events(job_id, seen):
                seen = event_id
                event = Progress.from_json(raw)
                if event.kind == "error":
                    raise TrainingFailed(f"training job {job_id} failed: {event.message}")
                if on_progress is not None and event.kind != "done":
                    maybe = on_progress(event)
                    if asyncio.iscoroutine(maybe):
                        await maybe
                if event.kind == "done" and event.result is not None:
                    return event.result  # a skipped run's too (status 'skipped')
            if status in ("failed", "cancelled", "aborted", "missing"):
                raise TrainingFailed(f"training job {job_id} ended as {status} without a result (see the worker's log)")
            if status == "succeeded":  # finished but its last event was not there yet when we read: once more
                if not await self.events(job_id, seen):
                    raise TrainingFailed(f"training job {job_id} succeeded without reporting a result")
                continue
            await asyncio.sleep(self.poll)


class QueueRunner:
    """What the bot trains through when KILROY_TRAINING_QUEUE=postgres: `run` enqueues a job and follows it, with
    the local `TrainingRunner`'s interface (run, busy, reconcile), so the nightly loop and /retrain are unchanged.

    `community` is the lineage trained (None: the whole bot, the layout before communities); one runner per
    community, like `TrainingRunner`."""

    def __init__(
        self,
        queue: JobQueue,
        *,
        community: str | None = None,
        promote: Callable[[int], Awaitable[RunResult]] | None = None,
    ) -> None:
        self.queue = queue
        self.community = community
        # A/B trials on: the worker stops a gate-passing candidate before serving it (it has no live model, no
        # trial); the asking bot runs the rest of the promotion sequence (`Promoter.apply`: guard or trial) and
        # tells the other processes
        self.promote = promote
        self._mine: int | None = None  # the job this process waits on

    @property
    def busy(self) -> bool:
        """True while this process waits on a job (another process's job: `run` refuses with TrainingBusy)."""
        return self._mine is not None

    async def reconcile(self) -> list[str]:
        """Nothing to do here: the worker finishes interrupted runs before each job."""
        return []

    async def run(
        self,
        reason: str,
        on_progress: OnProgress | None = None,
        *,
        now: float | None = None,
        backup: bool | None = None,
    ) -> RunResult:
        """Enqueue a training, relay its progress, return its result (already promoted by the worker). `backup`: as
        `TrainingRunner.run`'s (a night over many communities asks for the nightly backup before its first only)."""
        if self._mine is not None:
            raise TrainingBusy(f"training job {self._mine}")
        job = await self.queue.enqueue(self.community, reason, now=now, backup=backup)
        self._mine = job
        log.info("training job %d enqueued (%s)", job, reason)
        try:
            result = await self.queue.wait(job, on_progress)
            if self.promote is not None and result.run_id is not None and result.accepted and not result.promoted:
                result = await self.promote(result.run_id)
                if result.adapter is not None and (result.promoted or result.trial):
                    await notify_promoted(self.queue.app, self.community, result.adapter, result.run_id)
            return result
        finally:
            self._mine = None


async def listen_promotions(
    url: str,
    on_promoted: Callable[[str | None, str], Awaitable[None]],
    *,
    catch_up: Callable[[], Awaitable[None]] | None = None,
    retry: float = 5.0,
    ready: asyncio.Event | None = None,
) -> None:
    """LISTEN on `kilroy_adapters` until cancelled: `on_promoted(community, adapter)` for each promotion. After each
    (re)connection `catch_up()` runs first, for a promotion sent while we were not listening."""
    import psycopg

    while True:
        try:
            async with await psycopg.AsyncConnection.connect(psycopg_url(url), autocommit=True) as conn:
                await conn.execute(f"LISTEN {PROMOTIONS_CHANNEL}")
                if catch_up is not None:
                    await catch_up()
                if ready is not None:
                    ready.set()
                async for note in conn.notifies():
                    try:
                        payload = json.loads(note.payload)
                        await on_promoted(payload.get("community"), str(payload["adapter"]))
                    except Exception:
                        log.exception("could not serve the promoted adapter %r", note.payload)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("promotion listener lost its connection (%s); reconnecting in %.0f s", exc, retry)
            await asyncio.sleep(retry)


async def notify_promoted(app: procrastinate.App, community: str | None, adapter: str, run_id: int | None) -> None:
    """Tell every bot process that `adapter` now serves `community`."""
    payload = json.dumps({"community": community, "adapter": adapter, "run_id": run_id})
    await app.connector.execute_query_async(
        "SELECT pg_notify(%(channel)s, %(payload)s)", channel=PROMOTIONS_CHANNEL, payload=payload
    )
