"""The composition root: `open_services` builds every service once; every entry point uses it.

`kilroy run` (through `bot.app.bot.run_bot`), `simulate`, `generate`, `story` and the benchmarks open the same
services the same way: the model, its generator thread, the database, the adapter store, the adapter service
(which restores the serving adapter), the training runner (one training at a time, one promotion sequence) and the
story service. Nothing here knows about Discord.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from bot.adapters.serving import AdapterService
from bot.adapters.store import AdapterStore
from bot.config.settings import Settings
from bot.domain.safety import OutputFilter
from bot.engine.generator import Generator
from bot.engine.threads import serving_threads
from bot.ops.backup import nightly_backup
from bot.privacy.service import PrivacyService
from bot.storage import Storage
from bot.stories.service import StoryService
from bot.training.runner import TrainingRunner
from bot.trials.service import TrialService

log = logging.getLogger(__name__)


@dataclass
class Services:
    """What the bot and the commands run on, built once by `open_services`."""

    settings: Settings
    storage: Storage
    adapter_store: AdapterStore  # the versions on disk and the pointer
    generator: Generator
    serving: AdapterService  # what the live model serves: activate, use, roll back
    training: TrainingRunner
    stories: StoryService
    trials: TrialService
    privacy: PrivacyService
    clock: Callable[[], float] = field(default=time.time)
    output_filter: OutputFilter = field(default_factory=OutputFilter)  # one filter for every text sent


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
    `in_process_training` trains in this process instead of the worker (`kilroy train`, the simulation).
    `freeze_heap` moves the start-up heap out of the garbage collector's sight (the long-running bot).
    Everything is closed on exit.
    """
    from bot.engine.generator import SamplingParams
    from bot.engine.model import load_base

    store = AdapterStore(settings.adapters_dir)
    if adapter not in (None, "base"):
        store.path(adapter)  # validate before the slow model load
    loaded = await asyncio.to_thread(load_base, settings.model, settings.data_dir)
    settings.check_context(loaded.context_size)  # token budgets that fit this model's context, or a clear error
    generator = Generator(
        loaded,
        SamplingParams.from_settings(settings.generation),
        max_queue=settings.safety.max_queue,
        # trainings run in a worker process beside us: while one runs, take only our share of the cores
        # (bot/engine/threads.py); when training runs in this process (`kilroy train`, the simulation) nothing
        # competes, so torch keeps them all
        threads=None if in_process_training else serving_threads(),
    )
    output_filter = OutputFilter(settings.discord.blocklist, settings.safety.allow_urls)
    try:
        async with Storage.open(settings.db_path) as storage:
            adapters = AdapterService(store, generator)
            trials = TrialService(storage, adapters, generator, settings)
            training = TrainingRunner(
                settings,
                storage,
                store,
                # activate and move the pointer under the adapter service's lock: no /adapter use in between
                swap=adapters.use,
                trial=trials.on_candidate,
                in_process=in_process_training,
                backup=nightly_backup,
            )
            # the model thread takes every core, except while a training (here or in another process) runs
            generator.contended = TrainingNow(training)
            await training.reconcile()
            if adapter is not None:
                await adapters.activate(adapter)
            else:
                log.info("serving adapter %s", await adapters.restore())
                await trials.restore()
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
                serving=adapters,
                training=training,
                stories=StoryService(storage, generator, settings.story, output_filter=output_filter),
                output_filter=output_filter,
                trials=trials,
                privacy=PrivacyService(storage, retention_days=settings.safety.retention_days, adapter_store=store),
            )
    finally:
        await generator.close()
