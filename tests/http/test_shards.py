"""/healthz lists each shard this process holds, /metrics labels the gateway's series by shard; without shard
information (before Discord said how many) the series keep their unlabelled form."""

from __future__ import annotations

from bot.http.health import GatewayState, HealthSources, Part, ShardState, check_health
from bot.http.metrics import Metrics

TWO = GatewayState(
    connected=False,
    ready=False,
    latency_ms=40.0,
    detail="shard 3 not connected to the Discord gateway",
    shards=(ShardState(1, True, True, 40.0, 12), ShardState(3, False, False, None, 0)),
    shard_count=4,
)


async def _ok() -> None:
    return None


async def _adapter() -> Part:
    return Part(True, "serving base")


async def test_healthz_names_each_shard_and_fails_when_one_is_down():
    report = await check_health(HealthSources(gateway=lambda: TWO, database=_ok, adapter=_adapter))
    assert report.status_code == 503 and report.failing == ("gateway",)
    assert report.body["gateway"]["detail"] == "shard 3 not connected to the Discord gateway"
    assert report.body["shard_count"] == 4
    assert report.body["shards"] == [
        {"id": 1, "connected": True, "ready": True, "latency_ms": 40.0, "guilds": 12},
        {"id": 3, "connected": False, "ready": False, "latency_ms": None, "guilds": 0},
    ]


async def test_healthz_while_starting_has_no_shards():
    report = await check_health(None)
    assert report.body["shards"] == [] and report.body["shard_count"] is None


async def test_metrics_label_the_gateway_by_shard():
    m = Metrics()
    await m.refresh(None, gateway=TWO)
    text = m.render().decode()
    for line in (
        'kilroy_gateway_connected{shard="1"} 1.0',
        'kilroy_gateway_connected{shard="3"} 0.0',
        'kilroy_gateway_latency_seconds{shard="1"} 0.04',
        'kilroy_gateway_guilds{shard="1"} 12.0',
        "kilroy_gateway_shard_count 4.0",
    ):
        assert line in text, line
    assert 'kilroy_gateway_latency_seconds{shard="3"}' not in text  # no heartbeat answered yet: no value


async def test_metrics_without_shard_information_keep_the_unlabelled_series():
    m = Metrics()
    assert "kilroy_gateway_connected 0.0" in m.render().decode()
    await m.refresh(None, gateway=GatewayState(True, True, 12.0))
    text = m.render().decode()
    assert "kilroy_gateway_connected 1.0" in text and "kilroy_gateway_latency_seconds 0.012" in text
