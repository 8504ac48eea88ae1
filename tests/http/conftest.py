"""An HTTP app over a real (temporary) database with a few posts, votes, runs and a story; no Discord."""

from __future__ import annotations

import time

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.domain.scoring import ScoreFormula
from bot.http.dashboard import DashboardDeps
from bot.http.health import GatewayState, HealthSources, Part
from bot.http.metrics import Metrics, Snapshot
from bot.http.server import HttpContext, build_app
from bot.storage import NewPost
from tests.support.storage import add_story_line

TOKEN = "s3cret-dashboard-token-of-32-characters-or-more"
MEMBER_BASE = 712345678901234500  # snowflake-sized, so a leak cannot hide in chart coordinates


class FakeGateway:
    def __init__(self) -> None:
        self.state = GatewayState(connected=True, ready=True, latency_ms=42.0)

    def __call__(self) -> GatewayState:
        return self.state


async def seed(storage) -> None:
    """Three days of posts from two adapters, votes from members, one reply, one run and one story."""
    now = time.time()
    for i in range(6):
        mid = 1000 + i
        await storage.add_post(
            NewPost(
                channel_id=77,
                text=f"post number {i}",
                adapter="base" if i < 3 else "v0001",
                created_at=now - (5 - i) * 40000,
                message_id=mid,
            )
        )
        for member in range(i):
            await storage.add_vote(mid, MEMBER_BASE + member, "❤️", at=now)
    await storage.add_reply(9999, 1005, MEMBER_BASE + 1, length=3, at=now)
    run = await storage.start_run("nightly", at=now - 100)
    await storage.finish_run(run, status="done", at=now - 40, adapter="v0001", accepted=True, message="gate passed")
    sid = await storage.start_story(77, instruction="Continue", opening="Once", started_by=MEMBER_BASE + 1, at=now)
    await add_story_line(storage, sid, speaker="human_director", text="A cat sat.", member_id=MEMBER_BASE + 1, at=now)


def seed_adapters(store) -> None:
    """Two well-formed versions with gate metrics; v0002 serves, v0001 is the rollback target."""
    import json

    from tests.support.adapters import fake_adapter

    for i, (name, kl, d2, r3) in enumerate((("v0001", 0.12, 0.61, 0.05), ("v0002", 0.2, 0.57, 0.08))):
        fake_adapter(store.root, name)
        meta = {
            "created_at": time.time() - 1000 + i,
            "parent": "base",
            "metrics": {"kl": kl, "distinct2": d2, "repeat3": r3},
        }
        (store.root / name / "meta.json").write_text(json.dumps(meta))
    (store.root / "STATE.json").write_text(json.dumps({"current": "v0002", "history": ["base", "v0001"]}))


@pytest.fixture
async def app_env(tmp_path, storage, store):
    await seed(storage)
    seed_adapters(store)
    gateway = FakeGateway()
    metrics = Metrics()
    rolled: list[str] = []

    async def rollback() -> str:
        rolled.append("x")
        return "base"

    from types import SimpleNamespace

    trial = SimpleNamespace(id=3, candidate="v0002", incumbent="v0001", active=True)
    status = SimpleNamespace(
        trial=trial,
        text=lambda: (
            "Trial #3: candidate `v0002` against incumbent `v0001`\nposts: candidate 40, incumbent 41\n"
            "undecided · 81 settled · difference +0.120 [-0.310, +0.550]"
        ),
    )

    async def trial_status():
        return status

    async def stop_trial():
        trial.active = False
        return trial

    async def adapter() -> Part:
        return Part(True, "serving base", {"name": "base"})

    async def snapshot() -> Snapshot:
        c = await storage.counters()
        return Snapshot(
            c.posts, c.reaction_events, c.replies, c.votes, c.last_run, await storage.database_bytes(),
            refused={"blocklist": 2}, skipped=1,
            trial={"arms": {"candidate": 40, "incumbent": 41}, "decision": "undecided"},
        )  # fmt: skip

    ctx = HttpContext(
        metrics=metrics,
        token=TOKEN,
        health=HealthSources(
            gateway=gateway, database=lambda: storage.write_check(at=time.time()), adapter=adapter, queue=lambda: 0
        ),
        dashboard=DashboardDeps(
            storage=storage,
            store=store,
            formula=ScoreFormula(),
            serving=lambda: "base",
            rollback=rollback,
            trial=trial_status,
            stop_trial=stop_trial,
        ),
        snapshot=snapshot,
    )
    client = TestClient(TestServer(build_app(ctx)))
    await client.start_server()
    try:
        yield client, ctx, gateway, rolled
    finally:
        await client.close()
