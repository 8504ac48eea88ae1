"""Readiness: the gateway is connected and ready, the database takes a write, the serving adapter is sound.

The gateway is ready when every shard this process holds is; `shards` lists each one (connected, ready, latency,
servers), and `shard_count` is the total across every process.

`check_health` asks each source once, with a timeout, and never raises: a source that fails or hangs is a failing
part, named in the answer. Training and the generation queue are reported but never make the bot unhealthy (a
training that runs for an hour is normal).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ShardState:
    """One gateway shard this process holds: connected, ready (its servers loaded), heartbeat latency, servers."""

    id: int
    connected: bool
    ready: bool
    latency_ms: float | None = None
    guilds: int = 0

    def as_json(self) -> dict[str, Any]:
        """The shard as /healthz lists it."""
        latency = None if self.latency_ms is None else round(self.latency_ms, 1)
        return {"id": self.id, "connected": self.connected, "ready": self.ready, "latency_ms": latency,
                "guilds": self.guilds}  # fmt: skip


@dataclass(frozen=True)
class GatewayState:
    """What the Discord client says about its connection: the whole (every shard held) and each shard."""

    connected: bool
    ready: bool
    latency_ms: float | None = None
    detail: str = ""
    shards: tuple[ShardState, ...] = ()  # empty before Discord has said how many shards there are
    shard_count: int | None = None  # across every process


@dataclass(frozen=True)
class Part:
    """One checked part: ok or not, and why."""

    ok: bool
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class HealthSources:
    """Where the health check looks. Each is a plain callable, so tests pass fakes."""

    gateway: Callable[[], GatewayState]
    database: Callable[[], Awaitable[None]]  # raises (or hangs) when the database cannot take a write
    adapter: Callable[[], Awaitable[Part]]
    training: Callable[[], dict[str, Any]] = field(default=lambda: {})
    queue: Callable[[], int] = field(default=lambda: 0)


@dataclass(frozen=True)
class HealthReport:
    """The answer of /healthz."""

    ok: bool
    failing: tuple[str, ...]
    body: dict[str, Any]

    @property
    def status_code(self) -> int:
        """200 when ready, 503 otherwise."""
        return 200 if self.ok else 503


STARTING = "starting: loading the model and opening the database"


async def check_health(sources: HealthSources | None, *, timeout: float = 2.0) -> HealthReport:  # noqa: ASYNC109
    """Ask every source; the report names each failing part. `None` sources mean the bot is still starting."""
    if sources is None:
        body = {
            "status": "unavailable",
            "failing": ["starting"],
            "gateway": {"ok": False, "detail": STARTING},
            "latency_ms": None,
            "shard_count": None,
            "shards": [],
            "database": {"ok": False, "detail": STARTING},
            "adapter": {"ok": False, "detail": STARTING},
            "training": {},
            "queue": 0,
        }
        return HealthReport(False, ("starting",), body)

    shards: list[dict[str, Any]] = []
    shard_count = None
    try:
        gw = sources.gateway()
        gateway = Part(gw.connected and gw.ready, gw.detail or _gateway_detail(gw))
        latency = gw.latency_ms
        shards, shard_count = [s.as_json() for s in gw.shards], gw.shard_count
    except Exception as exc:
        gateway, latency = Part(False, f"gateway state unreadable: {exc}"), None

    try:
        await asyncio.wait_for(sources.database(), timeout)
        database = Part(True, "write check ok")
    except TimeoutError:
        database = Part(False, f"write check did not finish in {timeout:g}s (database locked or wedged)")
    except Exception as exc:
        database = Part(False, f"write check failed: {exc}")

    try:
        adapter = await asyncio.wait_for(sources.adapter(), timeout)
    except TimeoutError:
        adapter = Part(False, f"adapter check did not finish in {timeout:g}s")
    except Exception as exc:
        adapter = Part(False, f"adapter check failed: {exc}")

    try:
        training = sources.training()
    except Exception as exc:
        training = {"detail": f"unreadable: {exc}"}
    try:
        queue = int(sources.queue())
    except Exception:
        queue = -1

    parts = {"gateway": gateway, "database": database, "adapter": adapter}
    failing = tuple(name for name, part in parts.items() if not part.ok)
    body: dict[str, Any] = {
        "status": "ok" if not failing else "unavailable",
        "failing": list(failing),
        "gateway": {"ok": gateway.ok, "detail": gateway.detail},
        "latency_ms": None if latency is None else round(latency, 1),
        "shard_count": shard_count,
        "shards": shards,
        "database": {"ok": database.ok, "detail": database.detail},
        "adapter": {"ok": adapter.ok, "detail": adapter.detail, **adapter.extra},
        "training": training,
        "queue": queue,
    }
    return HealthReport(not failing, failing, body)


def _gateway_detail(gw: GatewayState) -> str:
    if gw.connected and gw.ready:
        return "connected and ready"
    if gw.connected:
        return "connected, not ready yet (waiting for the guilds)"
    return "not connected to the Discord gateway"


def adapter_probe(serving: Callable[[], str], pointer: Callable[[], str]) -> Callable[[], Awaitable[Part]]:
    """The serving adapter is healthy when it is the one the store's pointer names (it loaded and checked)."""

    async def probe() -> Part:
        name = serving()
        named = await asyncio.to_thread(pointer)  # reads STATE.json: off the event loop
        if name != named:
            return Part(
                False,
                f"serving {name!r} but the pointer names {named!r} (it failed to load; see the log, then "
                f"`kilroy doctor`)",
                {"name": name, "pointer": named},
            )
        return Part(True, f"serving {name}", {"name": name})

    return probe
