"""Readiness: 200 only when gateway, database and adapter are all ok; otherwise 503 naming what failed."""

from __future__ import annotations

import asyncio

from bot.http.health import GatewayState, HealthSources, Part, adapter_probe, check_health


def sources(*, gateway=None, db_error=None, db_hang=False, adapter_ok=True):
    async def database():
        if db_hang:
            await asyncio.sleep(10)
        if db_error:
            raise db_error

    async def adapter():
        return Part(adapter_ok, "ok" if adapter_ok else "pointer names v0003 but v0001 serves")

    return HealthSources(
        gateway=lambda: gateway or GatewayState(True, True, 12.5),
        database=database,
        adapter=adapter,
        training=lambda: {"busy": False},
        queue=lambda: 2,
    )


async def test_all_ok_is_200_with_every_field():
    report = await check_health(sources())
    assert report.status_code == 200 and report.failing == ()
    assert set(report.body) >= {"status", "gateway", "latency_ms", "database", "adapter", "training", "queue"}
    assert report.body["latency_ms"] == 12.5 and report.body["queue"] == 2


async def test_starting_is_503():
    report = await check_health(None)
    assert report.status_code == 503 and report.failing == ("starting",)


async def test_gateway_not_ready_or_disconnected_is_503():
    for state in (GatewayState(True, False), GatewayState(False, False)):
        report = await check_health(sources(gateway=state))
        assert report.status_code == 503 and report.failing == ("gateway",)


async def test_database_failure_and_hang_are_named():
    report = await check_health(sources(db_error=OSError("disk I/O error")))
    assert report.failing == ("database",) and "disk I/O error" in report.body["database"]["detail"]
    report = await check_health(sources(db_hang=True), timeout=0.05)
    assert report.failing == ("database",) and "did not finish" in report.body["database"]["detail"]


async def test_bad_adapter_is_named_and_several_failures_listed():
    report = await check_health(sources(adapter_ok=False, gateway=GatewayState(False, False)))
    assert report.failing == ("gateway", "adapter") and "v0003" in report.body["adapter"]["detail"]


async def test_a_crashing_source_is_a_failed_part_not_an_exception():
    s = sources()
    s.gateway = lambda: 1 / 0
    report = await check_health(s)
    assert report.failing == ("gateway",)


async def test_adapter_probe_fails_when_serving_differs_from_the_pointer():
    """The pointer names v0003 but it failed to load and v0001 serves: unhealthy, with both names and the fix."""
    ok = await adapter_probe(lambda: "v0003", lambda: "v0003")()
    assert ok.ok and ok.extra == {"name": "v0003"}
    bad = await adapter_probe(lambda: "v0001", lambda: "v0003")()
    assert not bad.ok and bad.extra == {"name": "v0001", "pointer": "v0003"} and "kilroy doctor" in bad.detail
