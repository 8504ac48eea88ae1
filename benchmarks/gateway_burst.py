"""Reaction burst through the real discord.py client against the loopback fake Discord (tests/e2e).

    python benchmarks/gateway_burst.py [--events 2000] [--posts 50] [--members 200]

Prints events/s until every event is stored, and the event loop's worst lag during the burst against the worst lag
of the same ticker on the idle bot, measured in the same run. The fake server shares the process and the loop with
the bot, so the figures include the cost of producing the events.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the fake server lives in tests/e2e

import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route

from bot.config import Settings
from bot.engine.tiny import ensure_tiny
from tests.e2e import fake_discord as fd
from tests.e2e.burst import run_burst
from tests.e2e.conftest import running_bot


async def idle_lag(seconds: float = 2.0) -> float:
    worst, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        await asyncio.sleep(0.005)
        worst = max(worst, (time.perf_counter() - t - 0.005) * 1000)
    return worst


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--events", type=int, default=2000)
    p.add_argument("--posts", type=int, default=50)
    p.add_argument("--members", type=int, default=200)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp())
    model = ensure_tiny(Path("data"), "test")
    settings = Settings.from_env(
        {
            "KILROY_DATA_DIR": str(tmp),
            "KILROY_ADAPTERS_DIR": str(tmp / "adapters"),
            "KILROY_MODEL": str(model),
            "KILROY_GUILD_IDS": str(fd.GUILD_ID),
        }
    )
    server = fd.FakeDiscord()
    await server.start()
    Route.BASE = server.base_url
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(server.gateway_url)
    try:
        async with running_bot(settings, server) as bot:
            idle = await idle_lag()
            r = await run_burst(bot, server, events=args.events, posts=args.posts, members=args.members)
    finally:
        await server.stop()
    exact = "exact" if r.actual == r.expected else f"MISMATCH ({len(r.actual ^ r.expected)} differ)"
    print(
        f"{r.events} events on {args.posts} posts from {args.members} members: {r.seconds:.2f}s, "
        f"{r.events_per_second:.0f} events/s, stored {exact}"
    )
    print(
        f"event loop worst lag: burst {r.worst_lag_ms:.1f} ms vs idle {idle:.1f} ms "
        f"({r.worst_lag_ms / max(idle, 0.01):.1f}x idle)"
    )


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    asyncio.run(main())
