"""Promotion: the one place, and the one order, in which a trained candidate becomes the serving adapter.

The training worker only trains, commits the candidate as a new version and records the gate's verdict; it never
moves the adapter pointer. The bot (or `kilroy train` without a bot) then runs this sequence, each step recorded
in `training_runs.stage` so that an interrupted sequence is finished, never half-applied:

    committed  the worker wrote `adapters/vNNNN` and claimed its posts (the run is still 'running')
 1. marked     the claimed posts become trained and the run closes, in one transaction
 2. swapped    the adapter is loaded into the live model and health-checked (one sample), then made active
 3. promoted   the pointer (STATE.json) moves, last
    kept       the gate refused the candidate: it stays on disk, never served
    trial      the gate passed it and A/B trials are on (KILROY_AB_SHARE > 0): instead of steps 2-3 it goes on a
               live trial against the serving adapter (bot/trials/service.py); if the community's reactions promote
               it, the trial runs steps 2-3 through `AdapterService.use` and the stage becomes `promoted`
    refused    the candidate could not be loaded or failed its health check: the previous adapter keeps serving

Per community (issue 24) there is one Promoter per lineage (`community`), over that lineage's store and its own
swap and trial hooks: the same sequence, in the same order, for each.

`reconcile()` runs under the training lock before every run and at start: it closes runs whose process died
before committing, removes half-written `.tmp-*` folders, and walks every interrupted sequence forward. A post is
therefore trained on once, and the pointer and the live adapter agree after any crash.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable

from bot.adapters.store import AdapterStore
from bot.domain.records import RunResult
from bot.logs import log_context
from bot.storage import Storage, TrainingRun

log = logging.getLogger(__name__)

Swap = Callable[[str], Awaitable[object]]
"""Load an adapter into the live model, health-check it and make it active; raise (serving unchanged) on failure."""

StartTrial = Callable[[str, int], Awaitable[bool]]
"""Put a gate-passing candidate (name, run id) on an A/B trial instead of swapping it in; False: trials are off."""


class Promoter:
    """Walks committed candidates through the promotion sequence."""

    def __init__(
        self,
        storage: Storage,
        store: AdapterStore,
        *,
        swap: Swap | None = None,
        clock: Callable[[], float] = time.time,
        fault: Callable[[str], None] | None = None,
        trial: StartTrial | None = None,
        defer_to_trial: bool = False,
        community: str | None = None,
    ) -> None:
        self.storage = storage
        self.store = store  # the lineage's store: a run's adapter is a bare version name in it
        self.community = community  # this lineage's runs only (None: every run, the layout before communities)
        self.swap = swap  # None: no live model here (kilroy train, start-up); the next start loads the pointer
        self.clock = clock
        self._fault = fault or (lambda _step: None)  # tests inject crashes between steps
        self.trial = trial
        # no live model but trials are on (`kilroy train`): stop at 'marked'; the bot's next start runs the trial
        self.defer_to_trial = defer_to_trial

    async def reconcile(self) -> list[str]:
        """Finish or undo whatever an earlier process left half done; return what was fixed. Hold the lock."""
        fixed: list[str] = []
        if n := await self.storage.fail_stale_runs(at=self.clock()):
            fixed.append(f"closed {n} run(s) whose process stopped before committing")
        if n := self.store.remove_temp_dirs():
            fixed.append(f"removed {n} half-written adapter folder(s)")
        for run in await self.storage.unfinished_promotions(self.community):
            result = await self.apply(run.id)
            fixed.append(f"finished the promotion sequence of run {run.id} ({result.adapter}: {result.reason})")
        for line in fixed:
            log.warning("recovered: %s", line)
        return fixed

    async def apply(self, run_id: int) -> RunResult:
        """Run (or resume) the promotion sequence of a committed run; return what it ended as."""
        with log_context(run=run_id):  # each line of the sequence (and of the swap it calls) names the run
            return await self._apply(run_id)

    async def _apply(self, run_id: int) -> RunResult:
        run = await self._run(run_id)
        if run.stage == "committed":
            await self.storage.mark_run_trained(run_id, at=self.clock())
            self._fault("marked")
            run = await self._run(run_id)
        name = run.adapter
        assert name is not None, "a committed run names its adapter"
        if not run.accepted:
            await self.storage.set_run_stage(run_id, "kept")
            return _result(run, promoted=False)
        if run.stage == "marked":
            if self.trial is None and self.defer_to_trial:
                return _result(run, promoted=False, reason=f"{run.message}; its A/B trial starts with the bot")
            try:
                if self.trial is not None and await self.trial(name, run_id):
                    await self.storage.set_run_stage(run_id, "trial")
                    log.info("run %d: %s passed the gate and is on an A/B trial", run_id, name)
                    return dataclasses.replace(_result(run, promoted=False), trial=True)
                if self.swap is not None:
                    await self.swap(name)
                else:
                    self.store.path(name)  # no live model: at least the files must be valid
            except Exception as exc:
                reason = f"{run.message}; not served: {type(exc).__name__}: {exc}"
                log.error("run %d: adapter %s could not be served: %s", run_id, name, exc)
                await self.storage.set_run_stage(run_id, "refused", message=reason)
                return _result(run, promoted=False, reason=reason)
            await self.storage.set_run_stage(run_id, "swapped")
            self._fault("swapped")
        self.store.set_current(name)  # last: only now does a restart serve the new adapter
        self._fault("pointer")
        await self.storage.set_run_stage(run_id, "promoted")
        log.info("run %d: %s promoted and serving", run_id, name)
        return _result(run, promoted=True)

    async def _run(self, run_id: int) -> TrainingRun:
        run = await self.storage.get_run(run_id)
        if run is None:
            raise LookupError(f"no training run {run_id}")
        return run


def _result(run: TrainingRun, *, promoted: bool, reason: str | None = None) -> RunResult:
    return RunResult(
        status="done",
        run_id=run.id,
        adapter=run.adapter,
        accepted=bool(run.accepted),
        promoted=promoted,
        reason=reason if reason is not None else (run.message or ""),
        metrics=dict(run.metrics),
    )
