"""Reaction burst through the real discord.py client against the loopback fake Discord (tests/e2e).

    python benchmarks/gateway_burst.py [--events 2000] [--posts 50] [--members 200]

Prints events/s until every event is stored, and the event loop's worst lag during the burst against the worst lag
of the same ticker on the idle bot, measured in the same run. The fake server shares the process and the loop with
the bot, so the figures include the cost of producing the events.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the fake server lives in tests/e2e

import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route

from bot.config.settings import Settings
from bot.engine.tiny import ensure_tiny
from tests.support import fake_discord as fd
from tests.support.burst import run_burst
from tests.support.e2e import running_bot


async def idle_lag(seconds: float = 2.0) -> float:
    worst, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        await asyncio.sleep(0.005)
        worst = max(worst, (time.perf_counter() - t - 0.005) * 1000)
    return worst


async def burst_once(args: argparse.Namespace) -> dict:
    """One fresh bot, one burst; with --mode unfrozen the bot's start-up gc.collect/gc.freeze are disabled."""
    if args.mode == "unfrozen":
        gc.freeze = lambda: None  # type: ignore[assignment]
        gc.collect = lambda *a: 0  # type: ignore[assignment]
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
    return {
        "events": r.events,
        "seconds": r.seconds,
        "eps": r.events_per_second,
        "lag": r.worst_lag_ms,
        "idle": idle,
        "exact": r.actual == r.expected,
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--events", type=int, default=2000)
    p.add_argument("--posts", type=int, default=50)
    p.add_argument("--members", type=int, default=200)
    p.add_argument("--mode", choices=["frozen", "unfrozen"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.mode:
        print(json.dumps(asyncio.run(burst_once(args))))
        return
    # each mode in a fresh interpreter: the first full GC pass after start-up is what the freeze avoids
    results = {}
    for mode in ("unfrozen", "frozen"):
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--mode",
                mode,
                "--events",
                str(args.events),
                "--posts",
                str(args.posts),
                "--members",
                str(args.members),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    f, u = results["frozen"], results["unfrozen"]
    print(
        f"{f['events']} events on {args.posts} posts from {args.members} members, as the bot runs (heap frozen at "
        f"start): {f['seconds']:.2f}s, {f['eps']:.0f} events/s, stored {'exact' if f['exact'] else 'NOT EXACT'}"
    )
    print(f"event loop worst lag: {f['lag']:.1f} ms (idle {f['idle']:.1f} ms)")
    print(
        f"baseline without the start-up gc.freeze: {u['eps']:.0f} events/s, worst lag {u['lag']:.1f} ms "
        f"({u['lag'] / max(f['lag'], 0.01):.1f}x the frozen run)"
    )


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
