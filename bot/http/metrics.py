"""Prometheus metrics, every name prefixed `kilroy_`, in a registry of their own (no global state).

Two kinds of series. Events seen by this process (commands, generations, event-loop lag) are counted as they
happen; the gateway's series carry a `shard` label, one per shard this process holds. Totals that the database
already holds (posts, reactions, replies, the last training) are read at scrape time through `refresh()`, so they
survive restarts and agree with what the bot stored (several shard processes sharing one database all report them).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from bot.domain.safety import OutputFilter
    from bot.http.health import GatewayState
    from bot.storage import Storage
    from bot.trials.service import TrialStatus

log = logging.getLogger(__name__)

PREFIX = "kilroy_"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class Snapshot:
    """What the database and the files said at the last scrape."""

    posts: dict[tuple[int, str, str], int] = field(default_factory=dict)
    reaction_events: dict[str, int] = field(default_factory=dict)
    replies: int = 0
    votes: int = 0
    last_run: dict[str, Any] | None = None
    database_bytes: int = 0
    trial: dict[str, Any] | None = None  # {"arms": {name: posts}, "decision": str} when a trial runs
    refused: dict[str, int] = field(default_factory=dict)  # output filter: texts refused (resampled), by reason
    skipped: int = 0  # output filter: posts skipped after every resample was refused


class _SnapshotCollector(Collector):
    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        s = self._snapshot()
        posts = CounterMetricFamily(
            "kilroy_posts", "Posts sent and stored, by channel, adapter and kind", labels=["channel", "adapter", "kind"]
        )
        for (channel, adapter, kind), n in sorted(s.posts.items()):
            posts.add_metric([str(channel), adapter, kind], n)
        yield posts
        reactions = CounterMetricFamily(
            "kilroy_reaction_events", "Human reaction events counted, by action", labels=["action"]
        )
        for action in ("add", "remove"):
            reactions.add_metric([action], s.reaction_events.get(action, 0))
        yield reactions
        yield CounterMetricFamily("kilroy_replies", "Human replies to Kilroy's posts counted", value=s.replies)
        refused = CounterMetricFamily(
            "kilroy_texts_refused",
            "Generated texts the output filter refused (then resampled), by reason",
            labels=["reason"],
        )
        for reason, n in sorted(s.refused.items()):
            refused.add_metric([reason], n)
        yield refused
        yield CounterMetricFamily(
            "kilroy_posts_skipped", "Posts skipped because the output filter refused every resample", value=s.skipped
        )
        yield GaugeMetricFamily(
            "kilroy_votes", "Current votes (reactions not removed) on Kilroy's posts", value=s.votes
        )
        yield GaugeMetricFamily("kilroy_database_bytes", "Database size on disk, WAL included", value=s.database_bytes)
        run = s.last_run or {}
        yield GaugeMetricFamily(
            "kilroy_last_training_seconds", "Duration of the last finished training run", value=run.get("seconds", 0)
        )
        outcome = GaugeMetricFamily(
            "kilroy_last_training_outcome", "1 for the outcome of the last finished training run", labels=["outcome"]
        )
        last = run.get("status")
        if last == "done":
            last = "accepted" if run.get("accepted") else "refused"  # the gate's verdict, whatever then served
        for name in ("accepted", "refused", "skipped", "failed"):
            outcome.add_metric([name], 1.0 if last == name else 0.0)
        yield outcome
        yield GaugeMetricFamily(
            "kilroy_last_training_timestamp_seconds",
            "When the last training run finished (unix time)",
            value=run.get("finished_at", 0),
        )
        if s.trial:
            arms = GaugeMetricFamily("kilroy_trial_arm_posts", "Posts per arm of the running trial", labels=["arm"])
            for arm, n in sorted(s.trial.get("arms", {}).items()):
                arms.add_metric([arm], n)
            yield arms
            decision = GaugeMetricFamily(
                "kilroy_trial_decision", "1 for the trial's current decision", labels=["decision"]
            )
            decision.add_metric([str(s.trial.get("decision", "running"))], 1.0)
            yield decision


class _GatewayCollector(Collector):
    """The gateway as the last scrape saw it, one series per shard this process holds (`shard` label). Before
    Discord has said how many shards there are, one series without the label, as before sharding."""

    def __init__(self, state: Callable[[], GatewayState | None]) -> None:
        self._state = state

    def collect(self) -> Iterator[Metric]:
        gw = self._state()
        shards = gw.shards if gw is not None else ()
        labels = ["shard"] if shards else None
        up = GaugeMetricFamily(
            "kilroy_gateway_connected", "1 while the Discord gateway is connected and ready, per shard", labels=labels
        )
        latency = GaugeMetricFamily(
            "kilroy_gateway_latency_seconds", "Heartbeat latency of the Discord gateway, per shard", labels=labels
        )
        if shards:
            guilds = GaugeMetricFamily("kilroy_gateway_guilds", "Servers on each shard held here", labels=labels)
            for s in shards:
                up.add_metric([str(s.id)], 1.0 if s.connected and s.ready else 0.0)
                if s.latency_ms is not None:
                    latency.add_metric([str(s.id)], s.latency_ms / 1000.0)
                guilds.add_metric([str(s.id)], s.guilds)
            yield guilds
        else:
            up.add_metric([], 1.0 if gw is not None and gw.connected and gw.ready else 0.0)
            if gw is not None and gw.latency_ms is not None:
                latency.add_metric([], gw.latency_ms / 1000.0)
        yield up
        yield latency
        if gw is not None and gw.shard_count is not None:
            yield GaugeMetricFamily(
                "kilroy_gateway_shard_count", "Gateway shards across every Kilroy process", value=gw.shard_count
            )


class Metrics:
    """The bot's metrics. Hooks (`command`, `generation`, `lag`) are plain methods the services call."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.commands = Counter(
            "kilroy_commands", "Slash commands run, by name and outcome", ["command", "outcome"], registry=r
        )
        self.generation_seconds = Histogram(
            "kilroy_generation_seconds",
            "Wall time of one generation call (all its candidates), queueing included",
            buckets=(0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64),
            registry=r,
        )
        self.generation_tokens = Histogram(
            "kilroy_generation_tokens",
            "Tokens generated per sample",
            buckets=(4, 8, 16, 32, 64, 128, 256),
            registry=r,
        )
        self.loop_lag = Histogram(
            "kilroy_event_loop_lag_seconds",
            "How late the event loop woke a 250 ms timer (time the loop was blocked)",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
        self.queue_depth = Gauge(
            "kilroy_generation_queue_depth", "Generation calls waiting or running on the model thread", registry=r
        )
        self.adapter = Info("kilroy_serving_adapter", "The LoRA adapter serving posts now", registry=r)
        self.gateway: GatewayState | None = None  # as the last scrape saw it
        self.registry.register(_GatewayCollector(lambda: self.gateway))
        self.snapshot = Snapshot()
        self.registry.register(_SnapshotCollector(lambda: self.snapshot))
        self.lag_max = 0.0

    # --- hooks -------------------------------------------------------------------------------------------------------

    def command(self, name: str, outcome: str) -> None:
        """A slash command finished: outcome is ok, refused, user_error or error."""
        self.commands.labels(command=name, outcome=outcome).inc()

    def generation(self, seconds: float, tokens: list[int]) -> None:
        """A generation call finished."""
        self.generation_seconds.observe(seconds)
        for t in tokens:
            self.generation_tokens.observe(t)

    # --- scrape ------------------------------------------------------------------------------------------------------

    async def refresh(
        self,
        snapshot: Callable[[], Awaitable[Snapshot]] | None,
        *,
        adapter: str | None = None,
        queue: int | None = None,
        gateway: GatewayState | None = None,
    ) -> None:
        """Update the scrape-time values; a failing source keeps the previous snapshot (and logs)."""
        if snapshot is not None:
            try:
                self.snapshot = await snapshot()
            except Exception:
                log.warning("metrics: could not read the database totals", exc_info=True)
        if adapter is not None:
            self.adapter.info({"name": adapter})
        if queue is not None:
            self.queue_depth.set(queue)
        if gateway is not None:
            self.gateway = gateway

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)


async def watch_loop_lag(metrics: Metrics, interval: float = 0.25) -> None:
    """Forever: sleep `interval`, record how late the loop woke us (cancel to stop)."""
    while True:
        started = time.perf_counter()
        await asyncio.sleep(interval)
        lag = max(0.0, time.perf_counter() - started - interval)
        metrics.loop_lag.observe(lag)
        metrics.lag_max = max(metrics.lag_max, lag)


def snapshot_source(
    storage: Storage, *, trial_status: Callable[[], Awaitable[TrialStatus | None]], output_filter: OutputFilter
) -> Callable[[], Awaitable[Snapshot]]:
    """What a scrape reads: the database's totals, the running trial's arms and decision, the output filter's
    refusals."""

    async def trial() -> dict[str, Any] | None:
        status = await trial_status()
        if status is None or not status.trial.active:
            return None
        return {"arms": dict(status.posts), "decision": status.decision.verdict or "undecided"}

    async def snapshot() -> Snapshot:
        c = await storage.counters()
        return Snapshot(
            c.posts, c.reaction_events, c.replies, c.votes, c.last_run, await storage.database_bytes(),
            trial=await trial(), refused=dict(output_filter.resampled), skipped=output_filter.skipped,
        )  # fmt: skip

    return snapshot
