"""A burst of reaction events through the gateway, shared by the e2e test (exactness) and the benchmark (speed)."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

from bot.storage import NewPost
from tests.support import fake_discord as fd


@dataclass
class BurstResult:
    events: int
    seconds: float
    worst_lag_ms: float
    expected: set[tuple[int, int, str]]
    actual: set[tuple[int, int, str]]

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds


async def run_burst(
    bot, server: fd.FakeDiscord, *, events: int = 2000, posts: int = 50, members: int = 200, seed: int = 0
) -> BurstResult:
    """Inject `events` reaction adds/removes as fast as the socket takes them; wait until all are stored."""
    storage = bot.services.storage
    rng = random.Random(seed)
    message_ids = []
    for i in range(posts):
        mid = fd.snowflake()
        server.messages[mid] = server._message(mid, fd.user(fd.BOT_ID, "kilroy", bot=True), f"post {i}")
        await storage.add_post(
            NewPost(channel_id=fd.CHANNEL_ID, text=f"post {i}", adapter="base", created_at=time.time(), message_id=mid)
        )
        message_ids.append(mid)
    people = [7_000_000 + i for i in range(members)]
    for uid in people:
        server.members.setdefault(uid, fd.member(uid, f"m{uid}"))
    async with storage.db.execute("SELECT COUNT(*) FROM reaction_events") as cur:
        before = (await cur.fetchone())[0]

    present: set[tuple[int, int, str]] = set()
    plan = []
    for _ in range(events):
        key = (rng.choice(message_ids), rng.choice(people), rng.choice(["❤️", "👍", "😂"]))
        add = key not in present or rng.random() < 0.05  # a few duplicate adds: must not double count
        (present.add if add else present.discard)(key)
        plan.append((key, add))

    lags: list[float] = []
    stop = False

    async def ticker() -> None:
        while not stop:
            t = time.perf_counter()
            await asyncio.sleep(0.005)
            lags.append((time.perf_counter() - t - 0.005) * 1000)

    tick = asyncio.create_task(ticker())
    started = time.perf_counter()
    for (mid, uid, emoji), add in plan:
        await server.react(mid, uid, emoji, add=add)
        # the fake server shares the bot's loop: yield after each send so the measured lag is the bot's, not ours
        await asyncio.sleep(0)
    deadline = time.monotonic() + 120
    while True:
        async with storage.db.execute("SELECT COUNT(*) FROM reaction_events") as cur:
            stored = (await cur.fetchone())[0] - before
        if stored >= events:
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"only {stored} of {events} reaction events were stored")
        await asyncio.sleep(0.01)
    seconds = time.perf_counter() - started
    stop = True
    await tick
    actual = set()
    for rec in await storage.post_records():
        if rec.post.message_id in message_ids:
            actual |= {(rec.post.message_id, v.member_id, v.emoji) for v in rec.votes}
    return BurstResult(events, seconds, max(lags, default=0.0), present, actual)
