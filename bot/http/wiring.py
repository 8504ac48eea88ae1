"""Connect the HTTP side to the running services: health sources, dashboard deps, the metrics snapshot.

Plain functions over duck-typed services (storage, generator, adapters, training), so the composition root calls
`attach(ctx, services, gateway=...)` once the services exist, and nothing here needs Discord.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from bot.http.dashboard import DashboardDeps
from bot.http.health import GatewayState, HealthSources, Part
from bot.http.metrics import Snapshot
from bot.http.server import HttpContext


def adapter_probe(adapters: Any) -> Callable[[], Any]:
    """The serving adapter is healthy when it is the one the store's pointer names (it loaded and checked)."""

    async def probe() -> Part:
        serving = adapters.active
        pointer = await asyncio.to_thread(adapters.store.current)
        if serving != pointer:
            return Part(
                False,
                f"serving {serving!r} but the pointer names {pointer!r} (it failed to load; see the log, then "
                f"`kilroy doctor`)",
                {"name": serving, "pointer": pointer},
            )
        return Part(True, f"serving {serving}", {"name": serving})

    return probe


def attach(ctx: HttpContext, services: Any, *, gateway: Callable[[], GatewayState]) -> None:
    """Point the HTTP context at the live services (called once they are open)."""
    storage, generator, adapters, training = services.storage, services.generator, services.serving, services.training
    clock = getattr(services, "clock", time.time)

    def training_state() -> dict[str, Any]:
        return {"busy": bool(getattr(training, "busy", False))}

    output_filter = getattr(services, "output_filter", None)
    trials = getattr(services, "trials", None)

    async def trial_snapshot() -> dict[str, Any] | None:
        status = await trials.status() if trials is not None else None
        if status is None or not status.trial.active:
            return None
        verdict = status.decision.verdict
        return {"arms": dict(status.posts), "decision": str(getattr(verdict, "value", verdict) or "undecided")}

    async def snapshot() -> Snapshot:
        c = await storage.counters()
        return Snapshot(
            c.posts, c.reaction_events, c.replies, c.votes, c.last_run, await storage.database_bytes(),
            trial=await trial_snapshot(), refused=dict(getattr(output_filter, "resampled", {})),
            skipped=int(getattr(output_filter, "skipped", 0)),
        )  # fmt: skip

    ctx.health = HealthSources(
        gateway=gateway,
        database=lambda: storage.write_check(at=clock()),
        adapter=adapter_probe(adapters),
        training=training_state,
        queue=lambda: generator.pending,
    )
    ctx.dashboard = DashboardDeps(
        storage=storage,
        store=adapters.store,
        formula=services.settings.scoring,
        serving=lambda: adapters.active,
        rollback=adapters.rollback,
        clock=clock,
        key=ctx.token,
        trial=trials.status if trials is not None else None,
        stop_trial=(lambda: trials.stop("dashboard")) if trials is not None else None,
    )
    ctx.snapshot = snapshot
    generator.observers.append(lambda seconds, samples: ctx.metrics.generation(seconds, [s.tokens for s in samples]))
