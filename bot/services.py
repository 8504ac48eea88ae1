"""The composition root: every service is built here, once, for every entry point; nothing else wires them.

- `open_services`: the model, its generator thread, the database, the adapter store, the serving adapter, the training
  runner (one training at a time, one promotion sequence), the trials, the stories and the privacy service
  (`kilroy simulate`, `generate`, `story`, the benchmarks, and the bot through the next one).
- `open_bot_services`: `kilroy run`'s: the run lock, the HTTP server (health, metrics, dashboard), then
  `open_services` with the HTTP sources, the metrics and the trial announcements wired to the Discord face.
- `open_shell_services`: the database, the adapter store and an in-process training runner, with no live model
  (`kilroy train`, `kilroy adapters trial`).

Communities (issue 24): every server learns its own lineage (bot/adapters/lineages.py). `Communities` builds, per
community and on first use, its serving (`AdapterService`), its A/B trials (`TrialService`) and its training runner
(all sharing the one training lock), and runs a night over them (`bot.training.night.Night`). The commons is the
default lineage: `Services.serving`, `.trials`, `.training` and `.adapter_store` are the commons' (what serves
whatever names no server: story mode, `kilroy generate`, the simulation). `prepare_lineages` moves a flat adapters
folder into the lineages at every start (bot/adapters/migrate.py).

Nothing here knows about Discord: the bot lends its gateway state and its log channel through `BotHooks`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bot.adapters.commons import CommonsPolicy, commons_policy
from bot.adapters.lineages import Lineages
from bot.adapters.migrate import migrate_flat
from bot.adapters.serving import AdapterService
from bot.adapters.store import AdapterStore
from bot.config.settings import Settings
from bot.domain.community import COMMONS, community_id, guild_of, parse_ref
from bot.domain.records import BASE
from bot.domain.safety import OutputFilter
from bot.engine.generator import Generator
from bot.engine.threads import serving_threads
from bot.http.health import GatewayState
from bot.ops.backup import nightly_backup
from bot.privacy.service import PrivacyService
from bot.storage import Storage
from bot.stories.service import StoryService
from bot.training.lock import TrainingBusy, TrainingLock
from bot.training.night import Night, NightResult
from bot.training.queue import JobQueue, QueueRunner
from bot.training.runner import TrainingRunner
from bot.trials.service import Pins, TrialService

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
        self._announce: Callable[..., Awaitable[None]] | None = None

    def plug(self, *, gateway: Callable[[], GatewayState], announce: Callable[..., Awaitable[None]]) -> None:
        """Called once by the bot when it is built."""
        self._gateway, self._announce = gateway, announce

    def gateway(self) -> GatewayState:
        """The Discord gateway as /healthz reports it."""
        return self._gateway()

    async def announce(self, text: str, guild_id: int | None = None) -> None:
        """Say `text` in the server's log channel, KILROY_LOG_CHANNEL_ID without one (nothing before the bot plugs
        in)."""
        if self._announce is not None:
            if guild_id is None:
                await self._announce(text)
            else:
                await self._announce(text, guild_id)

    def announce_for(self, community: str) -> Callable[[str], Awaitable[None]]:
        """`announce` into a community's own log channel (the commons: KILROY_LOG_CHANNEL_ID)."""
        guild = guild_of(community)
        return lambda text: self.announce(text, guild)


class Communities:
    """Per-community services, each built on first use and kept: serving, trials, training runner; and the night.

    `generator` None: the shell (no live model): runners check a promoted adapter's files and move the pointer.
    """

    def __init__(
        self,
        settings: Settings,
        storage: Storage,
        lineages: Lineages,
        generator: Generator | None,
        *,
        hooks: BotHooks | None = None,
        clock: Callable[[], float] = time.time,
        in_process: bool = False,
        backup: Callable[[Settings], object] | None = None,
        defer_to_trial: bool = False,
        queue: JobQueue | None = None,
    ) -> None:
        self.settings, self.storage, self.lineages, self.generator = settings, storage, lineages, generator
        self.queue = queue  # KILROY_TRAINING_QUEUE=postgres: trainings are jobs a `kilroy worker` runs
        self.hooks = hooks or BotHooks()
        self.clock, self.in_process, self.backup, self.defer_to_trial = clock, in_process, backup, defer_to_trial
        self.pins = Pins(generator) if generator is not None else None
        self._serving: dict[str, AdapterService] = {}
        self._trials: dict[str, TrialService] = {}
        self._runners: dict[str, TrainingRunner] = {}
        self._queued: dict[str, QueueRunner] = {}
        self.night = Night(self.runner, storage, settings, skip=self._skip)  # type: ignore[arg-type]

    @staticmethod
    def of_guild(guild_id: int) -> str:
        """The community of a server."""
        return community_id(guild_id)

    def serving(self, community: str) -> AdapterService:
        """What the live model serves for one lineage (the commons drives the generator's default)."""
        if self.generator is None:
            raise RuntimeError("no live model here")
        found = self._serving.get(community)
        if found is None:
            found = self._serving[community] = AdapterService(
                self.lineages.store(community), self.generator, community=community, default=community == COMMONS
            )
        return found

    def trials(self, community: str) -> TrialService:
        """A community's A/B trials."""
        if self.generator is None:
            raise RuntimeError("no live model here")
        found = self._trials.get(community)
        if found is None:
            found = self._trials[community] = TrialService(
                self.storage,
                self.serving(community),
                self.generator,
                self.settings,
                clock=self.clock,
                announce=self.hooks.announce_for(community),
                community=community,
                serving=lambda: self.lineages.serving(community),
                path_of=self.lineages.path,
                pins=self.pins,
            )
        return found

    def runner(self, community: str) -> TrainingRunner | QueueRunner:
        """A community's training runner: its posts, its parent (what serves it), its gate and promotion. With the
        queue (KILROY_TRAINING_QUEUE=postgres) a `QueueRunner` that enqueues a job carrying the community (a
        `kilroy worker` runs that community's `local_runner`); with A/B trials on, this process (the one that asked)
        runs the guard or trial of the worker's candidate through the local runner's promoter."""
        if self.queue is None:
            return self.local_runner(community)
        queued = self._queued.get(community)
        if queued is None:
            promote = None
            if self.settings.trials.share > 0 and self.generator is not None:
                promote = self.local_runner(community).promoter.apply
            queued = self._queued[community] = QueueRunner(self.queue, community=community, promote=promote)
        return queued

    def local_runner(self, community: str) -> TrainingRunner:
        """A community's training path in this process (or its worker subprocess); `kilroy worker` runs jobs on it."""
        found = self._runners.get(community)
        if found is None:
            live = self.generator is not None
            found = self._runners[community] = TrainingRunner(
                self.settings,
                self.storage,
                self.lineages.store(community),
                # activate and move the pointer under the adapter service's lock: no /adapter use in between
                swap=self.serving(community).use if live else None,
                trial=self.trials(community).on_candidate if live else None,
                defer_to_trial=self.defer_to_trial and not live,
                in_process=self.in_process,
                backup=self.backup,  # type: ignore[arg-type]  # a night asks its first run for it
                community=community,
                # a server's first adapter starts from the commons (KILROY_COMMONS), else from what serves it
                parent=self._parent_of(community),
            )
        return found

    def _parent_of(self, community: str) -> Callable[[], str]:
        policy = self.lineages.policy
        if isinstance(policy, CommonsPolicy):
            return lambda: policy.parent(community, self.lineages)
        return lambda: self.lineages.serving(community)

    async def reference(self, community: str) -> str:
        """The reference that writes `community`'s next post, made resident: the one seam the posting path asks
        (posts due together become one mixed-adapter batch of these references)."""
        reference = self.lineages.serving(community)
        owner, version = parse_ref(reference)
        if owner is not None and self.generator is not None:
            await self.serving(owner).ensure_resident(version)
        return reference

    async def reconcile(self) -> list[str]:
        """At start: finish every lineage's interrupted promotion, if no other process trains now (with the queue,
        the workers do it before each job)."""
        if self.queue is not None:
            return []
        lock = TrainingLock(self.settings.adapters_dir)
        try:
            lock.acquire("start-up reconcile")
        except TrainingBusy as exc:
            log.info("not reconciling training state: %s", exc)
            return []
        try:
            fixed: list[str] = []
            for community in self.lineages.communities():
                fixed += await self.local_runner(community).promoter.reconcile()
            return fixed
        finally:
            lock.release()

    async def restore(self) -> dict[str, str]:
        """At start: every lineage serves its pointer (or its last good version), and its running trial resumes."""
        out = {}
        for community in self.lineages.communities():
            out[community] = await self.serving(community).restore()
            await self.trials(community).restore()
        return out

    async def _skip(self, community: str) -> str | None:
        # a superiority trial needs its posts to pile up; a new candidate every night would restart it forever (a
        # guard does not: the newest candidate takes over its candidate arm and the evidence carries on)
        if self.generator is None or self.settings.trials.mode == "guard":
            return None
        trial = await self.trials(community).running()
        return None if trial is None else f"its A/B trial #{trial.id} is still deciding"

    async def run_night(
        self, reason: str = "nightly", on_result: Callable[[NightResult], Awaitable[None]] | None = None
    ) -> list[NightResult]:
        """One night over every stale community (`Night.run`)."""
        try:
            return await self.night.run(reason, on_result=on_result)
        finally:
            await refresh_commons(self.lineages, self.storage, self.settings)  # settled counts decide who serves


async def prepare_lineages(settings: Settings, storage: Storage | None = None) -> Lineages:
    """The lineages under KILROY_ADAPTERS_DIR, a flat folder from before communities moved into them first (into
    every server that posted, and the commons). Runs under the training lock; skipped while another process holds it
    (a running bot, which migrated at its own start)."""
    lock = TrainingLock(settings.adapters_dir)
    try:
        lock.acquire("adapters migration")
    except TrainingBusy:
        lineages = Lineages(settings.adapters_dir, policy=commons_policy(settings))
        if storage is not None:
            await refresh_commons(lineages, storage, settings)
        return lineages
    try:
        if storage is None:
            async with Storage.open(settings.database) as opened:
                guilds = await opened.guilds_with_posts()
        else:
            guilds = await storage.guilds_with_posts()
        await asyncio.to_thread(migrate_flat, settings.adapters_dir, [community_id(g) for g in guilds])
    finally:
        lock.release()
    lineages = Lineages(settings.adapters_dir, policy=commons_policy(settings))
    if storage is not None:
        await refresh_commons(lineages, storage, settings)
    return lineages


async def refresh_commons(lineages: Lineages, storage: Storage, settings: Settings) -> None:
    """Count every server's settled posts for the commons policy (at start and after each night)."""
    policy = lineages.policy
    if isinstance(policy, CommonsPolicy):
        await policy.refresh(storage, now=time.time(), settle_hours=settings.scoring.settle_hours)


@dataclass
class Services:
    """What the bot and the commands run on, built once by `open_services`."""

    settings: Settings
    storage: Storage
    adapter_store: AdapterStore  # the commons' versions on disk and its pointer
    generator: Generator
    serving: AdapterService  # what the live model serves by default (the commons): activate, use, roll back
    training: TrainingRunner | QueueRunner  # the commons' runner (QueueRunner: KILROY_TRAINING_QUEUE=postgres)
    stories: StoryService
    trials: TrialService  # the commons' trials
    privacy: PrivacyService
    communities: Communities  # per server: serving, trials, training, and the night over them all
    clock: Callable[[], float] = field(default=time.time)
    output_filter: OutputFilter = field(default_factory=OutputFilter)  # one filter for every text sent
    hooks: BotHooks = field(default_factory=BotHooks)
    metrics: Metrics | None = None  # the bot's Prometheus counters, when its HTTP server runs


@dataclass
class ShellServices:
    """What the shell commands that serve nothing run on: no model loaded, no generator thread."""

    settings: Settings
    storage: Storage
    adapter_store: AdapterStore  # the commons'
    training: TrainingRunner  # the commons', in this process; a promoted adapter's files are checked, the pointer moves
    communities: Communities  # any lineage's runner: `communities.runner("g123")`


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


def adapter_store(settings: Settings, community: str = COMMONS) -> AdapterStore:
    """One lineage's versions under KILROY_ADAPTERS_DIR (also alone, for `kilroy adapters list|show|use|rollback`);
    a flat folder from before communities is moved into the lineages first."""
    return asyncio.run(prepare_lineages(settings)).store(community)


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

    lineages = await prepare_lineages(settings)
    store = lineages.store(COMMONS)
    if adapter not in (None, "base"):
        # validate before the slow model load: a reference ("g123/v0004"), or a version of the commons
        lineages.path(adapter) if "/" in adapter else store.path(adapter)
    loaded = await asyncio.to_thread(load_base, settings.model, settings.data_dir)
    settings.check_context(loaded.context_size)  # token budgets that fit this model's context, or a clear error
    generator = Generator(
        loaded,
        SamplingParams.from_settings(settings.generation),
        max_queue=settings.safety.max_queue,
        keep_loaded=settings.model.max_resident_adapters,
        lora_rank=settings.model.lora_rank,
        # an adapter a mixed batch names that is not resident loads from its lineage's folder
        resolver=lambda name: lineages.path(name) if "/" in name else store.path(name),
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
            await refresh_commons(lineages, storage, settings)  # who is served by the commons, from settled counts
            queue = None
            if settings.training.queue == "postgres" and not in_process_training:
                from bot.training.queue import JobQueue

                queue = await stack.enter_async_context(JobQueue.open(settings.database_url.get()))
            # trial starts and decisions go to each server's log channel once the bot plugs in
            communities = Communities(
                settings,
                storage,
                lineages,
                generator,
                hooks=hooks,
                clock=clock,
                in_process=in_process_training,
                backup=nightly_backup,
                queue=queue,
            )
            serving, trials, training = (
                communities.serving(COMMONS),
                communities.trials(COMMONS),
                communities.runner(COMMONS),
            )
            if queue is None:
                # the model thread takes every core, except while a training (here or in another process) runs
                generator.contended = TrainingNow(communities.local_runner(COMMONS))
            # queue: `kilroy worker` finishes interrupted promotions before each job, so nothing to do here
            await communities.reconcile()
            if adapter is not None and "/" in adapter:
                await generator.use_adapter(adapter, None if adapter == BASE else lineages.path(adapter))
            elif adapter is not None:
                await serving.activate(adapter)
            else:
                log.info("serving adapters %s", await communities.restore())
            if queue is not None:
                follow = follow_promotions(
                    settings,
                    communities.serving,
                    communities=communities.lineages.communities,
                    trials_for=communities.trials,
                )
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
                privacy=PrivacyService(  # a forgotten member leaves every lineage's metadata
                    storage, retention_days=settings.safety.retention_days, adapter_store=lineages, clock=clock
                ),
                communities=communities,
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
        lineages=s.communities.lineages,
    )
    ctx.snapshot = snapshot_source(s.storage, trial_status=s.trials.status, output_filter=s.output_filter)
    s.generator.observers.append(lambda seconds, samples: ctx.metrics.generation(seconds, [x.tokens for x in samples]))


@contextlib.asynccontextmanager
async def open_shell_services(settings: Settings) -> AsyncIterator[ShellServices]:
    """The database, the adapter store and an in-process training runner, with no live model: a promoted adapter's
    files are checked and the pointer moves, and a bot started later serves it (a running bot holds the training
    lock, so this cannot race it). With A/B trials on, a gate-passing candidate waits for the bot, whose next start
    puts it on trial."""
    async with Storage.open(settings.database) as storage:
        lineages = await prepare_lineages(settings, storage)
        communities = Communities(
            settings, storage, lineages, None, in_process=True, defer_to_trial=settings.trials.share > 0
        )
        yield ShellServices(
            settings=settings,
            storage=storage,
            adapter_store=lineages.store(COMMONS),
            training=communities.runner(COMMONS),
            communities=communities,
        )


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def follow_promotions(
    settings: Settings,
    serving_for: Callable[[str], AdapterService],
    *,
    communities: Callable[[], Iterable[str]] = lambda: [COMMONS],
    trials_for: Callable[[str], TrialService] | None = None,
    ready: asyncio.Event | None = None,
) -> None:
    """KILROY_TRAINING_QUEUE=postgres: serve each adapter a `kilroy worker` promotes, without a restart, in the
    community it was trained for (`serving_for(community)`; a job without one: the commons). The worker moved the
    pointer in the shared adapters folder; a notice missed while reconnecting is caught up from every lineage's."""
    from bot.training.queue import listen_promotions

    async def on_promoted(community: str | None, adapter: str) -> None:
        community = community or COMMONS
        serving = serving_for(community)
        if adapter != serving.active:
            took = await serving.activate(adapter)
            log.info("serving %s for %s, promoted by a training worker (swap %.0f ms)", adapter, community, took * 1000)
        if trials_for is not None:
            # a guard or trial another process started: both arms loaded and pinned here
            await trials_for(community).restore()

    async def catch_up() -> None:
        for community in communities():
            serving = serving_for(community)
            current = serving.store.current()
            if current != serving.active:
                await on_promoted(community, current)

    await listen_promotions(settings.database_url.get(), on_promoted, catch_up=catch_up, ready=ready)


@dataclass
class WorkerServices:
    """What `kilroy worker` runs on: the database, the shared adapters folder's lineages, a runner per community."""

    settings: Settings
    storage: Storage
    adapter_store: AdapterStore  # the commons'
    communities: Communities  # no live model: each lineage's runner, in this process

    def runner_for(self, community: str | None) -> TrainingRunner:
        """The training path of one community's job, in this process (the worker is the training's own process),
        with no live model: promotion checks the files and moves the pointer; the bots swap on the worker's notice.
        With A/B trials on, a gate-passing candidate waits for the asking bot (or a bot's next start). A job without
        a community (enqueued before communities) trains the commons."""
        return self.communities.local_runner(community or COMMONS)


@contextlib.asynccontextmanager
async def open_worker_services(settings: Settings) -> AsyncIterator[WorkerServices]:
    """`kilroy worker`'s services: the database and the adapters folder (its lineages) it shares with the bots."""
    async with Storage.open(settings.database) as storage:
        lineages = await prepare_lineages(settings, storage)
        communities = Communities(
            settings,
            storage,
            lineages,
            None,
            in_process=True,
            defer_to_trial=settings.trials.share > 0,
            backup=nightly_backup,
        )
        yield WorkerServices(
            settings=settings, storage=storage, adapter_store=lineages.store(COMMONS), communities=communities
        )
