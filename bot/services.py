"""The composition root: every service is built here, once, for every entry point; nothing else wires them.

- `open_services`: the model, its generator thread, the database, the adapter store, the serving adapter, the training
  runner (one training at a time, one promotion sequence), the trials, the stories and the privacy service
  (`kilroy simulate`, `generate`, `story`, the benchmarks, and the bot through the next one).
- `open_bot_services`: `kilroy run`'s: the run lock, the HTTP server (health, metrics, dashboard), then
  `open_services` with the HTTP sources, the metrics and the trial announcements wired to the Discord face.
- `open_shell_services`: the database, the adapter store and an in-process training runner, with no live model
  (`kilroy train`, `kilroy adapters trial`).

Nothing here knows about Discord: the bot lends its gateway state and its log channel through `BotHooks`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bot.adapters.promotion import Promoter
from bot.adapters.serving import AdapterService
from bot.adapters.store import AdapterStore
from bot.config.settings import Settings
from bot.domain.safety import OutputFilter
from bot.engine.generator import Generator
from bot.engine.threads import serving_threads
from bot.http.health import GatewayState
from bot.ops.backup import nightly_backup
from bot.privacy.service import PrivacyService
from bot.storage import Storage
from bot.stories.service import StoryService
from bot.training.queue import QueueRunner
from bot.training.runner import TrainingRunner
from bot.trials.service import TrialService

if TYPE_CHECKING:
    from bot.http.metrics import Metrics
    from bot.http.server import HttpContext

log = logging.getLogger(__name__)

NO_CLIENT = GatewayState(connected=False, ready=False, detail="no Discord client yet")


class BotHooks:
    """What only the Discord face can do, lent to the services once the bot exists (it is built after them): the
    gateway's state for /healthz, and a line in the log channel for trial announcements. Before the bot plugs in,
    the gateway reads as not connected and announcements are only logged (by the trial service)."""

    def __init__(self) -> None:
        self._gateway: Callable[[], GatewayState] = lambda: NO_CLIENT
        self._announce: Callable[[str], Awaitable[None]] | None = None

    def plug(self, *, gateway: Callable[[], GatewayState], announce: Callable[[str], Awaitable[None]]) -> None:
        """Called once by the bot when it is built."""
        self._gateway, self._announce = gateway, announce

    def gateway(self) -> GatewayState:
        """The Discord gateway as /healthz reports it."""
        return self._gateway()

    async def announce(self, text: str) -> None:
        """Say `text` in KILROY_LOG_CHANNEL_ID (nothing before the bot plugs in)."""
        if self._announce is not None:
            await self._announce(text)


@dataclass
class Services:
    """What the bot and the commands run on, built once by `open_services`."""

    settings: Settings
    storage: Storage
    adapter_store: AdapterStore  # the versions on disk and the pointer
    generator: Generator
    serving: AdapterService  # what the live model serves: activate, use, roll back
    training: TrainingRunner | QueueRunner  # QueueRunner: KILROY_TRAINING_QUEUE=postgres
    stories: StoryService
    trials: TrialService
    privacy: PrivacyService
    clock: Callable[[], float] = field(default=time.time)
    output_filter: OutputFilter = field(default_factory=OutputFilter)  # one filter for every text sent
    hooks: BotHooks = field(default_factory=BotHooks)
    metrics: Metrics | None = None  # the bot's Prometheus counters, when its HTTP server runs


@dataclass
class ShellServices:
    """What the shell commands that serve nothing run on: no model loaded, no generator thread."""

    settings: Settings
    storage: Storage
    adapter_store: AdapterStore
    training: TrainingRunner  # in this process; a promoted adapter's files are checked and the pointer moves


class CannotStart(Exception):
    """The bot cannot start: another one runs on this data directory, or the HTTP port is taken."""


class TrainingNow:
    """Is a training running? This process's own runs at once; another process's (`kilroy train` beside the bot)
    seen within `every` seconds, so that a generation does not probe the lock file each time."""

    def __init__(
        self, training: TrainingRunner, every: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.training, self.every, self.clock = training, every, clock
        self._next, self._other = 0.0, False

    def __call__(self) -> bool:
        if self.training.lock.held:
            return True
        now = self.clock()
        if now >= self._next:
            self._next, self._other = now + self.every, self.training.busy
        return self._other


def adapter_store(settings: Settings) -> AdapterStore:
    """The adapter versions under KILROY_ADAPTERS_DIR (also alone, for `kilroy adapters list|show|use|rollback`)."""
    return AdapterStore(settings.adapters_dir)


@contextlib.asynccontextmanager
async def open_services(
    settings: Settings,
    *,
    adapter: str | None = None,
    in_process_training: bool = False,
    freeze_heap: bool = False,
) -> AsyncIterator[Services]:
    """Load the model, open the database, finish any interrupted training, restore the serving adapter.

    `adapter` serves that version instead of the pointer's (without moving the pointer: `kilroy generate`).
    `in_process_training` trains in this process instead of the worker (the simulation).
    `freeze_heap` moves the start-up heap out of the garbage collector's sight (the long-running bot).
    Everything is closed on exit.
    """
    from bot.engine.generator import SamplingParams
    from bot.engine.model import load_base

    store = adapter_store(settings)
    if adapter not in (None, "base"):
        store.path(adapter)  # validate before the slow model load
    loaded = await asyncio.to_thread(load_base, settings.model, settings.data_dir)
    settings.check_context(loaded.context_size)  # token budgets that fit this model's context, or a clear error
    generator = Generator(
        loaded,
        SamplingParams.from_settings(settings.generation),
        max_queue=settings.safety.max_queue,
        lora_rank=settings.model.lora_rank,
        # trainings run in a worker process beside us: while one runs, take only our share of the cores
        # (bot/engine/threads.py); when training runs in this process (the simulation) nothing competes, so torch
        # keeps them all
        threads=None if in_process_training else serving_threads(),
    )
    output_filter = OutputFilter(settings.discord.blocklist, settings.safety.allow_urls)
    hooks = BotHooks()
    clock = time.time
    try:
        async with contextlib.AsyncExitStack() as stack, Storage.open(settings.database) as storage:
            queue = None
            if settings.training.queue == "postgres" and not in_process_training:
                from bot.training.queue import JobQueue

                queue = await stack.enter_async_context(JobQueue.open(settings.database_url.get()))
            serving = AdapterService(store, generator)
            # trial starts and decisions go to KILROY_LOG_CHANNEL_ID once the bot plugs in
            trials = TrialService(storage, serving, generator, settings, clock=clock, announce=hooks.announce)
            training: TrainingRunner | QueueRunner
            if queue is not None:
                # `kilroy worker` trains and promotes; we swap on its notice. With A/B trials on it stops before
                # serving, and this process (the one that asked) starts the guard or trial
                promoter = Promoter(storage, store, swap=serving.use, trial=trials.on_candidate)
                training = QueueRunner(queue, promote=promoter.apply if settings.trials.share > 0 else None)
            else:
                training = TrainingRunner(
                    settings,
                    storage,
                    store,
                    # activate and move the pointer under the adapter service's lock: no /adapter use in between
                    swap=serving.use,
                    trial=trials.on_candidate,
                    in_process=in_process_training,
                    backup=nightly_backup,
                )
                # the model thread takes every core, except while a training (here or in another process) runs
                generator.contended = TrainingNow(training)
            await training.reconcile()
            if adapter is not None:
                await serving.activate(adapter)
            else:
                log.info("serving adapter %s", await serving.restore())
                await trials.restore()
            if queue is not None:
                follow = follow_promotions(settings, serving, trials=trials)
                stack.push_async_callback(_stop, asyncio.create_task(follow))
            if freeze_heap:
                # torch and transformers leave a large, long-lived heap; a full GC pass over it stalled the event
                # loop for ~200 ms during reaction bursts (benchmarks/gateway_burst.py). Freezing moves everything
                # alive now out of the collector's sight: worst lag under a 2,000-event burst drops to a few ms.
                gc.collect()
                gc.freeze()
            yield Services(
                settings=settings,
                storage=storage,
                adapter_store=store,
                generator=generator,
                serving=serving,
                training=training,
                stories=StoryService(storage, generator, settings.story, output_filter=output_filter),
                trials=trials,
                privacy=PrivacyService(
                    storage, retention_days=settings.safety.retention_days, adapter_store=store, clock=clock
                ),
                clock=clock,
                output_filter=output_filter,
                hooks=hooks,
            )
    finally:
        await generator.close()


@contextlib.asynccontextmanager
async def open_bot_services(settings: Settings) -> AsyncIterator[Services]:
    """`kilroy run`'s services: the run lock, then the HTTP server (when KILROY_HTTP_PORT is set), so /healthz answers
    503 "starting" while the model loads; then `open_services` (heap frozen) with the HTTP sources and the metrics
    wired. On exit the HTTP sources go back to "starting", the services close, the server stops, the lock goes.
    Raises `CannotStart` when another bot runs on this data directory or the port is taken."""
    from bot.http.metrics import Metrics
    from bot.ops.backup import RunLock
    from bot.training.lock import TrainingBusy

    lock = RunLock(settings.data_dir)  # `kilroy restore` refuses while this is held
    try:
        lock.acquire("kilroy run")
    except TrainingBusy as exc:
        raise CannotStart(f"another bot already runs on {settings.data_dir} ({lock.holder()}); stop it first") from exc
    try:
        from bot.ops.restore import recover_at_start

        recover_at_start(settings)  # a restore killed midway is finished (journal written) or undone, before opening
        metrics = Metrics()
        async with _http_server(settings, metrics) as ctx, open_services(settings, freeze_heap=True) as services:
            if ctx is None:
                yield services
                return
            services.metrics = metrics
            _wire_http(ctx, services)
            try:
                yield services
            finally:  # the services close next: health and dashboard go back to "starting/stopping"
                ctx.health = ctx.dashboard = ctx.snapshot = None
    finally:
        lock.release()


@contextlib.asynccontextmanager
async def _http_server(settings: Settings, metrics: Metrics) -> AsyncIterator[HttpContext | None]:
    """The HTTP server (health, metrics, dashboard) when KILROY_HTTP_PORT is set; yields its context or None."""
    if settings.ops.http_port is None:
        yield None
        return
    from bot.http.auth import Sessions
    from bot.http.server import HttpContext, HttpServer

    ctx = HttpContext(
        metrics=metrics,
        token=settings.ops.dashboard_token.get(),
        secure_cookies=settings.ops.dashboard_secure_cookies,
        sessions=Sessions(settings.ops.dashboard_session_hours),
    )
    server = HttpServer(ctx, settings.ops.http_host, settings.ops.http_port)
    try:
        await server.start()
    except OSError as exc:
        raise CannotStart(
            f"cannot listen on {settings.ops.http_host}:{settings.ops.http_port} ({exc.strerror or exc}): set "
            "KILROY_HTTP_PORT to a free port, or leave it empty for no HTTP server"
        ) from exc
    try:
        yield ctx
    finally:
        await server.stop()


def _wire_http(ctx: HttpContext, s: Services) -> None:
    """Point the HTTP context at the live services: health sources, the dashboard, the scrape's snapshot, and each
    generation counted in the metrics."""
    from bot.http.dashboard import DashboardDeps
    from bot.http.health import HealthSources, adapter_probe
    from bot.http.metrics import snapshot_source

    ctx.health = HealthSources(
        gateway=s.hooks.gateway,
        database=lambda: s.storage.write_check(at=s.clock()),
        adapter=adapter_probe(lambda: s.serving.active, s.adapter_store.current),
        training=lambda: {"busy": s.training.busy},
        queue=lambda: s.generator.pending,
    )
    ctx.dashboard = DashboardDeps(
        storage=s.storage,
        store=s.adapter_store,
        formula=s.settings.scoring,
        serving=lambda: s.serving.active,
        rollback=s.serving.rollback,
        clock=s.clock,
        key=ctx.token,
        trial=s.trials.status,
        stop_trial=lambda: s.trials.stop("dashboard"),
    )
    ctx.snapshot = snapshot_source(s.storage, trial_status=s.trials.status, output_filter=s.output_filter)
    s.generator.observers.append(lambda seconds, samples: ctx.metrics.generation(seconds, [x.tokens for x in samples]))


@contextlib.asynccontextmanager
async def open_shell_services(settings: Settings) -> AsyncIterator[ShellServices]:
    """The database, the adapter store and an in-process training runner, with no live model: a promoted adapter's
    files are checked and the pointer moves, and a bot started later serves it (a running bot holds the training
    lock, so this cannot race it). With A/B trials on, a gate-passing candidate waits for the bot, whose next start
    puts it on trial."""
    store = adapter_store(settings)
    async with Storage.open(settings.database) as storage:
        training = TrainingRunner(settings, storage, store, in_process=True, defer_to_trial=settings.trials.share > 0)
        yield ShellServices(settings=settings, storage=storage, adapter_store=store, training=training)


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def follow_promotions(
    settings: Settings,
    serving: AdapterService,
    *,
    trials: TrialService | None = None,
    ready: asyncio.Event | None = None,
) -> None:
    """KILROY_TRAINING_QUEUE=postgres: serve each adapter a `kilroy worker` promotes, without a restart. The worker
    moved the pointer in the shared adapters folder; a notice missed while reconnecting is caught up from it."""
    from bot.training.queue import listen_promotions

    async def on_promoted(community: str | None, adapter: str) -> None:
        # one lineage until per-community serving lands (issue 24): every notice is ours
        if adapter != serving.active:
            took = await serving.activate(adapter)
            log.info("serving %s, promoted by a training worker (swap %.0f ms)", adapter, took * 1000)
        if trials is not None:
            await trials.restore()  # a guard or trial another process started: both arms loaded and pinned here

    async def catch_up() -> None:
        current = serving.store.current()
        if current != serving.active:
            await on_promoted(None, current)

    await listen_promotions(settings.database_url.get(), on_promoted, catch_up=catch_up, ready=ready)


@dataclass
class WorkerServices:
    """What `kilroy worker` runs on: the database, the shared adapter store, a training runner per community."""

    settings: Settings
    storage: Storage
    adapter_store: AdapterStore

    def runner_for(self, community: str | None) -> TrainingRunner:
        """The training path of one community's job, in this process (the worker is the training's own process),
        with no live model: promotion checks the files and moves the pointer; the bots swap on the worker's notice.
        With A/B trials on, a gate-passing candidate waits for a bot's next start (as with `kilroy train`)."""
        # per-community lineages (issue 24) plug in here: TrainingRunner(..., community=community) on its store
        return TrainingRunner(
            self.settings,
            self.storage,
            self.adapter_store,
            in_process=True,
            defer_to_trial=self.settings.trials.share > 0,
            backup=nightly_backup,
        )


@contextlib.asynccontextmanager
async def open_worker_services(settings: Settings) -> AsyncIterator[WorkerServices]:
    """`kilroy worker`'s services: the database and the adapters folder it shares with the bots."""
    async with Storage.open(settings.database) as storage:
        yield WorkerServices(settings=settings, storage=storage, adapter_store=adapter_store(settings))
