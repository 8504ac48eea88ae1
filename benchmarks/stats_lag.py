"""/stats over 20,000 posts: the worst event-loop lag of the old path (records built and scored in Python on the
loop) against the SQL summary (`Storage.stats_summary`, computed by SQLite on the connection's thread).

    PYTHONPATH=. python benchmarks/stats_lag.py [seeds...]
"""

from __future__ import annotations

import asyncio
import random
import sys
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path

from bot.domain.scoring import ScoreFormula
from bot.storage import Storage
from tests.support.stats import daily_scores, top_posts


async def lag_during(work: Awaitable[object]) -> tuple[float, float]:
    """(worst loop lag, wall time) in ms while `work` runs, measured by a 1 ms ticker."""
    worst, stop = 0.0, False

    async def ticker() -> None:
        nonlocal worst
        while not stop:
            t = time.perf_counter()
            await asyncio.sleep(0.001)
            worst = max(worst, time.perf_counter() - t - 0.001)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    start = time.perf_counter()
    await work
    took = time.perf_counter() - start
    stop = True
    await task
    return worst * 1000, took * 1000


async def run(seed: int, posts: int = 20_000) -> None:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as d:
        async with Storage.open(Path(d) / "k.db") as s:
            now = time.time()
            await s.db.executemany(
                "INSERT INTO posts (message_id, channel_id, guild_id, kind, text, adapter, created_at) "
                "VALUES (?, 1, 9, 'post', ?, ?, ?)",
                [
                    (1000 + i, f"p{i}", rng.choice(["base", "v1"]), now - rng.uniform(0, 360) * 86400)
                    for i in range(posts)
                ],
            )
            votes = [(i + 1, m, rng.choice(["❤️", "👎"]), now) for i in range(posts) for m in range(rng.randint(0, 5))]
            await s.db.executemany(
                "INSERT OR IGNORE INTO votes (post_id, member_id, emoji, at) VALUES (?,?,?,?)", votes
            )
            f = ScoreFormula()

            async def old() -> None:
                records = await s.post_records(created_after=now - 365 * 86400, guild_id=9)
                daily_scores(records, f)
                top_posts(records, f, 5)

            async def sql() -> None:
                await s.stats_summary(
                    created_after=now - 365 * 86400,
                    guild_id=9,
                    emoji_weights=f.emoji_weights,
                    default_weight=1.0,
                    reply_weight=2.0,
                )

            (old_lag, old_ms), (sql_lag, sql_ms) = await lag_during(old()), await lag_during(sql())
            print(
                f"seed {seed}: {posts} posts, {len(votes)} votes; Python path worst lag {old_lag:.0f} ms "
                f"({old_ms:.0f} ms); SQL path worst lag {sql_lag:.1f} ms ({sql_ms:.0f} ms)"
            )


if __name__ == "__main__":
    for seed in [int(a) for a in sys.argv[1:]] or [0, 1, 2]:
        asyncio.run(run(seed))
