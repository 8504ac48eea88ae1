"""A night for many communities (issue 24): one training at a time, stalest first, within a time budget.

    night = Night(runner_for, storage, settings)       runner_for(community) -> that lineage's TrainingRunner
    await night.order(now) -> ["g7", "g3"]             communities with enough new settled posts, most first
    await night.run("nightly", on_result=...)          train them in that order until KILROY_TRAIN_BUDGET_MINUTES
    night.place("g3") -> 0 (training now), 2 (second in tonight's queue) or None (not queued)

Each community is trained by its own runner: its own posts, reward model, parent (what serves it), gate and
promotion (the one Promoter order, in its lineage). The runners share one lock, so a night, a /retrain and a
`kilroy train` never overlap. A community is started only while the budget lasts; whatever is left waits for the
next night (its posts stay untrained, so it is the stalest then). A community whose training fails is reported
and the night goes on with the next. Another training between two of the night's (a /retrain, `kilroy train`) is
waited for, within the budget.

The commons is queued when it has posts made outside any server (the simulation, the shell); its training on the
posts of servers that allow it is a later step (KILROY_COMMONS).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.config.settings import Settings
from bot.domain.community import COMMONS, community_id
from bot.domain.records import RunResult
from bot.storage import Storage
from bot.training.lock import TrainingBusy
from bot.training.runner import TrainingRunner

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NightResult:
    """One community's outcome tonight: a run's result, or why it did not run."""

    community: str
    result: RunResult | None = None
    error: str | None = None  # the training failed (the community keeps what serves it)
    skipped: str | None = None  # not trained tonight: a running trial decides, or the budget ran out


OnResult = Callable[[NightResult], Awaitable[None]]
Skip = Callable[[str], Awaitable[str | None]]


class Night:
    """Orders and runs the communities' trainings; see the module docstring."""

    def __init__(
        self,
        runner_for: Callable[[str], TrainingRunner],
        storage: Storage,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], float] = time.time,
        skip: Skip | None = None,
    ) -> None:
        self.runner_for, self.storage, self.settings = runner_for, storage, settings
        self.clock, self.now = clock, now
        self.skip = skip  # a reason not to train a community tonight (its A/B trial still decides), or None
        self.sleep = asyncio.sleep
        self.poll_seconds = 10.0  # how often a night waiting on another training looks again
        self.queue: list[str] = []  # tonight's communities still waiting, in order
        self.current: str | None = None  # the one training now

    async def order(self, now: float | None = None) -> list[str]:
        """Communities with at least KILROY_MIN_POSTS new settled posts, most first (ties: lower guild id first)."""
        now = self.now() if now is None else now
        settled_before = now - self.settings.scoring.settle_hours * 3600.0
        counts = await self.storage.untrained_settled_by_guild(created_before=settled_before)
        ready = [(n, g) for g, n in counts.items() if n >= self.settings.training.min_posts]
        own = [community_id(g) for n, g in sorted(ready, key=lambda x: (-x[0], x[1]))]
        # the commons first (KILROY_COMMONS not off): the servers' first adapters start from what it learns tonight;
        # a commons with too few new pooled posts ends at once with "not enough posts"
        return [COMMONS, *own] if self.settings.training.commons != "off" and own else own

    def place(self, community: str) -> int | None:
        """0 while `community` trains, k when it is k-th in tonight's queue, None when not queued."""
        if self.current == community:
            return 0
        return self.queue.index(community) + 1 if community in self.queue else None

    async def run(
        self,
        reason: str = "nightly",
        *,
        on_result: OnResult | None = None,
        communities: list[str] | None = None,
        now: float | None = None,
    ) -> list[NightResult]:
        """Train each community in order (default: `order()`), each through its own runner, while the budget lasts."""
        order = list(communities) if communities is not None else await self.order(now)
        self.queue = list(order)
        budget = self.settings.training.budget_minutes * 60.0
        started = self.clock()
        out: list[NightResult] = []
        first = True
        try:
            while self.queue:
                community = self.queue.pop(0)
                if self.clock() - started >= budget:
                    waiting = [community, *self.queue]
                    log.info("night: budget of %g min spent; %s wait(s) for the next night", budget / 60, waiting)
                    out += [NightResult(c, skipped="the night's training budget ran out") for c in waiting]
                    self.queue = []
                    break
                why = await self.skip(community) if self.skip is not None else None
                if why is not None:
                    outcome = NightResult(community, skipped=why)
                else:
                    self.current = community
                    try:
                        runner = self.runner_for(community)
                        while True:
                            try:
                                # the nightly backup once, before the night's first training
                                result = await runner.run(reason, now=now, backup=first and reason == "nightly")
                                break
                            except TrainingBusy:
                                # a /retrain or `kilroy train` between two of ours: wait for it, within the budget
                                if self.clock() - started >= budget:
                                    raise
                                await self.sleep(self.poll_seconds)
                        first = False
                        outcome = NightResult(community, result=result)
                    except TrainingBusy:
                        raise  # still busy when the budget ran out: the rest waits for the next night
                    except Exception as exc:
                        log.exception("night: training %s failed; it keeps what serves it", community)
                        outcome = NightResult(community, error=f"{type(exc).__name__}: {exc}")
                    finally:
                        self.current = None
                out.append(outcome)
                if on_result is not None:
                    try:
                        await on_result(outcome)
                    except Exception:
                        log.warning("night: reporting %s failed", community, exc_info=True)
        finally:
            self.queue, self.current = [], None
        return out
