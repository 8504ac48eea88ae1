"""Reaction events into storage: the old per-event path (kept here only as the baseline) against the group-commit
writer (`bot/storage/votes.py`), same events, same run, each into a fresh temporary database.

    PYTHONPATH=. python benchmarks/votes.py [events] [rounds]

Each event is its own task, as a discord.py listener is. burst: all created at once (creating 20,000 tasks is itself
one long loop iteration, so its lag is mostly the injector's). 2,000/s (benchmarks/service.py's rate) and 4,000/s:
started in 10 ms ticks; "waiting" is the most events pending at once, the backlog the GC ends up scanning.
serial: one event at a time, each awaited (the simulator's pattern): what a lone event pays.
Both paths must end with the same votes and the same event log, or the run fails.
"""

from __future__ import annotations

import asyncio
import math
import random
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from benchmarks.stats_lag import lag_during
from bot.storage import NewPost, Storage

Event = tuple[int, int, str, str, float]  # message_id, member_id, emoji, action, at


async def old_path(s: Storage, e: Event) -> bool:
    """The per-event add_vote / remove_vote before the writer: a SELECT, then BEGIN, two statements, COMMIT."""
    message_id, member_id, emoji, action, at = e
    if s._opted_out(member_id):
        return False
    post_id = await s.post_id_by_message(message_id)
    if post_id is None:
        return False
    async with s.transaction():
        if s._opted_out(member_id):
            return False
        await s.db.execute(
            "INSERT INTO reaction_events (post_id, member_id, emoji, action, is_bot, at) VALUES (?, ?, ?, ?, 0, ?)",
            (post_id, member_id, emoji, action, at),
        )
        if action == "add":
            cur = await s.db.execute(
                "INSERT INTO votes (post_id, member_id, emoji, at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (post_id, member_id, emoji, at),
            )
        else:
            cur = await s.db.execute(
                "DELETE FROM votes WHERE post_id = ? AND member_id = ? AND emoji = ?", (post_id, member_id, emoji)
            )
        return cur.rowcount == 1


def new_path(s: Storage, e: Event) -> Awaitable[bool]:
    m, u, emoji, action, at = e
    return s.add_vote(m, u, emoji, at=at) if action == "add" else s.remove_vote(m, u, emoji, at=at)


def make_events(n: int, seed: int = 0) -> list[Event]:
    """Adds and removes on 50 posts (and a few foreign messages) from 200 members, two emoji."""
    rng = random.Random(seed)
    return [
        (rng.randrange(1, 53), rng.randrange(200), rng.choice("❤👍"), "add" if rng.random() < 0.7 else "remove", i)
        for i in range(n)
    ]


async def inject(call: Callable[[Event], Awaitable[bool]], events: list[Event], rate: float) -> list[bool]:
    """Start one task an event, `rate` a second in 10 ms ticks (all at once if inf), and wait for all of them;
    with rate 0, one event after the other, each awaited."""
    if rate == 0:
        return [await call(e) for e in events]
    step = len(events) if math.isinf(rate) else int(rate / 100)
    tasks, start = [], time.perf_counter()
    for i in range(0, len(events), step):
        tasks += [asyncio.ensure_future(call(e)) for e in events[i : i + step]]
        await asyncio.sleep(0 if math.isinf(rate) else max(0.0, start + (i + step) / rate - time.perf_counter()))
    return await asyncio.gather(*tasks)


async def run(path: Callable[[Storage, Event], Awaitable[bool]], events: list[Event], rate: float) -> tuple:
    """(events/s, worst loop lag ms, most events waiting, answers, final votes, event log) into a fresh database."""
    with tempfile.TemporaryDirectory() as d:
        async with Storage.open(Path(d) / "k.db") as s:
            for mid in range(1, 51):
                await s.add_post(NewPost(channel_id=1, text="p", adapter="base", created_at=0.0, message_id=mid))
            waiting, most = 0, 0

            async def call(e: Event) -> bool:
                nonlocal waiting, most
                waiting += 1
                most = max(most, waiting)
                try:
                    return await path(s, e)
                finally:
                    waiting -= 1

            answers: list[bool] = []

            async def work() -> None:
                answers.extend(await inject(call, events, rate))

            worst_ms, took_ms = await lag_during(work())
            votes = await s.db.execute_fetchall("SELECT post_id, member_id, emoji, at FROM votes ORDER BY 1, 2, 3")
            log = await s.db.execute_fetchall("SELECT post_id, member_id, emoji, action, at FROM reaction_events")
    return len(events) / (took_ms / 1000), worst_ms, most, answers, list(votes), list(log)


async def main(n: int, rounds: int) -> None:
    modes = (("burst", math.inf, n), ("2,000/s", 2000, n // 2), ("4,000/s", 4000, n // 2), ("serial", 0, n // 10))
    for name, rate, count in modes:
        events = make_events(count)
        for r in range(rounds):
            old = await run(old_path, events, rate)
            new = await run(new_path, events, rate)
            assert old[3:] == new[3:], "the writer's answers or rows differ from the per-event path"
            print(
                f"{name:8} #{r} {count:6,} events | per-event {old[0]:6,.0f}/s, lag {old[1]:5.1f} ms, "
                f"{old[2]:6,} waiting | writer {new[0]:6,.0f}/s, lag {new[1]:5.1f} ms, {new[2]:6,} waiting | "
                f"x{new[0] / old[0]:.2f}"
            )


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    asyncio.run(main(args[0] if args else 20_000, args[1] if len(args) > 1 else 1))
