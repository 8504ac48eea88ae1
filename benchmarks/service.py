"""Kilroy as a service under load: does the event loop stall, is anything lost, what does the bot's path cost?

    python benchmarks/service.py [--quick] [--json PATH] [--seconds 30] [--rate 2000]

(a) load: the real bot (real discord.py client, the offline tiny model) against the loopback fake Discord
    (tests/e2e); reaction events are injected at --rate per second for --seconds while posts generate, an adapter
    is swapped in and a training runs in its worker process. Reports events stored exactly or not, events/s, and
    the event loop's p99 and worst lag over the whole window (a 10 ms ticker).
(b) overhead: seconds per post through the bot's generation path (Generator.generate, 2 candidates, as
    compose_post samples) against raw `model.generate` of the same 2 candidates with the same model, settings and
    seeds (so both sample the same tokens), alternating, in the same run.
(c) history: a database of 20k posts, 300k votes and 1M reaction events, and 365 adapter versions; the time of
    /stats 365 (Storage.stats_summary), /forget-me (Storage.forget_member) and an /adapter autocomplete
    (AdapterStore.list, cold then cached), each with the worst loop lag it caused.
(d) a post during a training: generation time of the post path while the training worker runs, over idle.

The fake server shares the process and the loop with the bot, so (a) includes the cost of producing the events.
`--quick` shortens (a) to 5 s at the same rate and (c) to 2k posts / 100k events / 60 versions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the fake server lives in tests/e2e

import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route

from bot.adapters.store import AdapterStore
from bot.config.settings import Settings
from bot.domain.scoring import ScoreFormula
from bot.engine.tiny import ensure_tiny
from bot.logs import setup_logging
from bot.storage import Storage
from tests.support import e2e, fake_discord as fd
from tests.support.data import OPEN_GATE


@contextlib.asynccontextmanager
async def running_bot(settings: Settings, server: fd.FakeDiscord) -> AsyncIterator[Any]:
    """The bot as `kilroy run` builds it (heap frozen after start-up), logged in to the fake Discord."""
    async with e2e.running_bot(settings, server, freeze_heap=True, ready_timeout=60) as bot:
        yield bot


def model_dir() -> Path:
    cache = os.environ.get("KILROY_TEST_MODEL_CACHE")
    return ensure_tiny(Path(cache) if cache else Path("data"), "test")


def bench_settings(tmp: Path) -> Settings:
    return Settings.from_env(
        {
            "KILROY_DATA_DIR": str(tmp),
            "KILROY_ADAPTERS_DIR": str(tmp / "adapters"),
            "KILROY_MODEL": str(model_dir()),
            "KILROY_GUILD_IDS": str(fd.GUILD_ID),
            "KILROY_SETTLE_HOURS": "0",
            "KILROY_MIN_TRAIN_POSTS": "2",
            "KILROY_EPOCHS": "1",
            **OPEN_GATE,
            "KILROY_GATE_SAMPLES": "8",
            "KILROY_MAX_NEW_TOKENS": "24",
        }
    )


class LagTicker:
    """How late a 10 ms timer fires: the time the event loop was blocked."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval, self.lags, self._task = interval, [], None
        self.stalls: list[tuple[float, float]] = []  # (when it ended, lag ms) for lags over 100 ms

    async def _run(self) -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(self.interval)
            lag = (time.perf_counter() - t - self.interval) * 1000
            self.lags.append(lag)
            if lag > 100:
                self.stalls.append((time.perf_counter(), lag))

    def __enter__(self) -> LagTicker:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        self._task.cancel()

    def p99(self) -> float:
        return statistics.quantiles(self.lags, n=100)[98] if len(self.lags) >= 100 else max(self.lags, default=0.0)

    def worst(self) -> float:
        return max(self.lags, default=0.0)


# --- (a) and (d): the bot under load ------------------------------------------------------------------------------


async def load(seconds: float, rate: int, seed: int = 0) -> dict:
    from tests.support.adapters import make_adapter

    tmp = Path(tempfile.mkdtemp(prefix="kilroy-service-"))
    settings = bench_settings(tmp)
    server = fd.FakeDiscord()
    await server.start()
    Route.BASE = server.base_url
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(server.gateway_url)
    rng = random.Random(seed)
    try:
        async with running_bot(settings, server) as bot:
            s = bot.services
            posting = bot.get_cog("Posting")
            swap_to = await asyncio.to_thread(make_adapter, s.generator.loaded, s.adapter_store, 1)
            message_ids = []
            for _ in range(8):  # real posts (with their token ids) to react to and to train on
                message_ids.append((await posting.post_to(fd.CHANNEL_ID)).id)
            people = [7_000_000 + i for i in range(300)]
            for uid in people:
                server.members.setdefault(uid, fd.member(uid, f"m{uid}"))

            # (d) idle: the post path's generation time with nothing else running
            idle = []
            for i in range(6):
                t = time.perf_counter()
                await s.generator.generate(2, seed=100 + i)
                idle.append(time.perf_counter() - t)

            async with s.storage.db.execute("SELECT COUNT(*) FROM reaction_events") as cur:
                before = (await cur.fetchone())[0]
            present: set[tuple[int, int, str]] = set()
            sent = 0
            gen_times: list[tuple[float, float, bool]] = []  # (at, seconds, training running)
            s.generator.observers.append(lambda sec, _s: gen_times.append((time.perf_counter(), sec, s.training.busy)))

            async def keep_posting(stop_at: float) -> int:
                n = 0
                while time.perf_counter() < stop_at:
                    await marked("post", posting.post_to(fd.CHANNEL_ID))
                    n += 1
                    await asyncio.sleep(0.5)
                return n

            marks: list[tuple[float, str]] = []

            async def marked(name: str, aw: Any) -> Any:
                marks.append((time.perf_counter(), f"{name} start"))
                try:
                    return await aw
                finally:
                    marks.append((time.perf_counter(), f"{name} end"))

            with LagTicker() as ticker:
                started = time.perf_counter()
                end = started + seconds
                training = asyncio.create_task(marked("training", s.training.run("benchmark")))
                posts_task = asyncio.create_task(keep_posting(end))
                swapped = False
                while (now := time.perf_counter()) < end:
                    if not swapped and now - started > 1.0:
                        asyncio.create_task(marked("swap", s.serving.use(swap_to)))  # noqa: RUF006 - ends with the load
                        swapped = True
                    due = int((now - started) * rate) - sent
                    for _ in range(max(0, due)):
                        key = (rng.choice(message_ids), rng.choice(people), rng.choice(["❤️", "👍", "😂"]))
                        add = key not in present or rng.random() < 0.05
                        (present.add if add else present.discard)(key)
                        await server.react(*key, add=add)
                        sent += 1
                    await asyncio.sleep(0.002)
                inject_seconds = time.perf_counter() - started
                deadline = time.monotonic() + 120
                while True:
                    async with s.storage.db.execute("SELECT COUNT(*) FROM reaction_events") as cur:
                        stored = (await cur.fetchone())[0] - before
                    if stored >= sent or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.01)
                store_seconds = time.perf_counter() - started
                posts_made = await posts_task
                outcome = await training
            actual = set()
            for rec in await s.storage.post_records():
                if rec.post.message_id in message_ids:
                    actual |= {(rec.post.message_id, v.member_id, v.emoji) for v in rec.votes}

            # (d) during a training: generate back to back while a second training's worker runs (on fresh posts)
            for _ in range(6):
                await posting.post_to(fd.CHANNEL_ID)
            during = []
            second = asyncio.create_task(s.training.run("benchmark-2"))
            await asyncio.sleep(0.2)
            i = 0
            while not second.done():
                t = time.perf_counter()
                await s.generator.generate(2, seed=200 + i)
                if not second.done():
                    during.append(time.perf_counter() - t)
                i += 1
            second_outcome = await second
    finally:
        await server.stop()
    idle_s = statistics.median(idle)
    stalls = [
        {
            "at_s": round(end - started, 2),
            "lag_ms": round(lag),
            "near": [m for t, m in marks if end - lag / 1000 - 0.3 <= t <= end + 0.05],
        }
        for end, lag in ticker.stalls
    ]
    during_s = statistics.median(during) if during else None
    return {
        "seconds": seconds,
        "events_sent": sent,
        "events_stored": stored,
        "events_lost": max(0, sent - stored),
        "votes_exact": actual == present,
        "events_per_s": sent / inject_seconds,
        "stored_per_s": stored / store_seconds,
        "lag_ms_p99": ticker.p99(),
        "lag_ms_max": ticker.worst(),
        "posts_during_load": posts_made,
        "training_during_load": getattr(outcome, "status", str(outcome)),
        "adapter_after": s.generator.active,
        "post_idle_s": idle_s,
        "post_during_training_s": during_s,
        "post_during_training_ratio": (during_s / idle_s) if during_s else None,
        "posts_during_training": len(during),
        "second_training": getattr(second_outcome, "status", str(second_outcome)),
        "stalls": stalls,
        "marks": [(round(t - started, 2), m) for t, m in marks],
    }


# --- (b) overhead of the bot's generation path --------------------------------------------------------------------


async def overhead(pairs: int) -> dict:
    import torch

    from bot.config.settings import GenerationSettings, ModelSettings
    from bot.engine.generator import Generator, SamplingParams, prompt_ids_for, stop_token_ids
    from bot.engine.model import load_base

    loaded = load_base(ModelSettings(name=str(model_dir())), Path("data"), device="cpu")
    params = SamplingParams.from_settings(GenerationSettings(max_new_tokens=40))
    generator = Generator(loaded, params)
    tok, model = loaded.tokenizer, loaded.model
    ids = prompt_ids_for(tok, "", loaded.context_size - params.max_new_tokens)
    stops = stop_token_ids(tok)

    def raw(seed: int) -> None:
        torch.manual_seed(seed)
        x = torch.tensor([ids] * 2)
        with torch.inference_mode():
            model.generate(
                input_ids=x, attention_mask=torch.ones_like(x), do_sample=True, temperature=params.temperature,
                top_p=params.top_p, top_k=params.top_k, max_new_tokens=params.max_new_tokens,
                repetition_penalty=params.repetition_penalty, eos_token_id=stops, pad_token_id=tok.pad_token_id,
            )  # fmt: skip

    try:
        await generator.generate(2, seed=0)  # warm both paths
        raw(0)
        bot_t, raw_t = [], []
        for i in range(pairs):
            t = time.perf_counter()
            await generator.generate(2, seed=i)
            bot_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            await asyncio.to_thread(raw, i)  # in a thread too: the same hop the generator makes
            raw_t.append(time.perf_counter() - t)
    finally:
        await generator.close()
    b, r = statistics.median(bot_t), statistics.median(raw_t)
    return {"bot_s_per_post": b, "raw_s_per_post": r, "overhead_ratio": b / r, "candidates": 2, "pairs": pairs}


# --- (c) a long history -------------------------------------------------------------------------------------------


def build_history(db: Path, posts: int, votes: int, events: int, seed: int = 0) -> None:
    """A migrated database filled with synthetic history (sqlite3 executemany: minutes would be hours through
    the bot)."""
    rng = random.Random(seed)
    now = time.time()
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    ids = list(range(1, posts + 1))
    con.executemany(
        "INSERT INTO posts (id, message_id, channel_id, guild_id, kind, text, prompt_ids, completion_ids, adapter, "
        "params, created_at) VALUES (?, ?, ?, 1, 'post', ?, '[1,2,3]', ?, ?, '{}', ?)",
        (
            (i, 10**12 + i, 100 + i % 3, f"post {i} " * 4, json.dumps(list(range(40))), f"v{1 + i * 365 // posts:04d}",
             now - (posts - i) * (365 * 86400 / posts))
            for i in ids
        ),
    )  # fmt: skip
    members = 5000
    con.executemany(
        "INSERT OR IGNORE INTO votes (post_id, member_id, emoji, at) VALUES (?, ?, ?, ?)",
        ((rng.choice(ids), 1 + rng.randrange(members), rng.choice("❤👍😂👎"), now) for _ in range(votes)),
    )
    con.executemany(
        "INSERT INTO reaction_events (post_id, member_id, emoji, action, is_bot, at) VALUES (?, ?, ?, ?, 0, ?)",
        (
            (rng.choice(ids), 1 + rng.randrange(members), "❤", "add" if rng.random() < 0.8 else "remove", now)
            for _ in range(events)
        ),
    )
    con.executemany(
        "INSERT INTO replies (message_id, post_id, member_id, length, at) VALUES (?, ?, ?, 5, ?)",
        ((2 * 10**12 + k, rng.choice(ids), 1 + rng.randrange(members), now) for k in range(posts // 2)),
    )
    con.commit()
    con.close()


def build_adapters(root: Path, versions: int) -> None:
    from tests.support.adapters import fake_adapter

    for v in range(1, versions + 1):
        fake_adapter(root, f"v{v:04d}")
    (root / "STATE.json").write_text(json.dumps({"current": f"v{versions:04d}", "history": []}))


async def timed(fn) -> tuple[float, float]:
    """(ms the call took, worst loop lag in ms while it ran)."""
    with LagTicker(0.002) as ticker:
        await asyncio.sleep(0.01)  # let the ticker start first, so a synchronous stretch of `fn` is seen
        t = time.perf_counter()
        await fn()
        took = (time.perf_counter() - t) * 1000
        await asyncio.sleep(0.005)
    return took, ticker.worst()


async def history(posts: int, votes: int, events: int, versions: int) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="kilroy-history-"))
    db = tmp / "kilroy.db"
    async with Storage.open(db):
        pass  # migrated schema
    t = time.perf_counter()
    await asyncio.to_thread(build_history, db, posts, votes, events)
    await asyncio.to_thread(build_adapters, tmp / "adapters", versions)
    built = time.perf_counter() - t
    store = AdapterStore(tmp / "adapters")
    formula = ScoreFormula()
    out: dict = {"posts": posts, "votes": votes, "events": events, "versions": versions, "build_s": built}
    with LagTicker(0.002) as idle:  # the machine's own noise: the worst lag of a loop doing nothing
        await asyncio.sleep(2.0)
    out["idle_lag_ms"] = idle.worst()
    async with Storage.open(db) as storage:
        out["stats_365_ms"], out["stats_365_lag_ms"] = await timed(
            lambda: storage.stats_summary(
                created_after=time.time() - 365 * 86400,
                guild_id=1,
                emoji_weights=formula.emoji_weights,
                default_weight=formula.default_emoji_weight,
                reply_weight=formula.reply_weight,
            )
        )
        out["dashboard_posts_365_ms"], out["dashboard_posts_365_lag_ms"] = await timed(
            lambda: storage.scored_posts(formula, since=time.time() - 365 * 86400, order="top", limit=100)
        )

        async def old_stats() -> None:  # what /stats did before: every record decoded on the loop
            from tests.support.stats import daily_scores, top_posts

            records = await storage.post_records(created_after=time.time() - 365 * 86400)
            daily_scores(records, formula)
            top_posts(records, formula, 5)

        out["stats_365_old_ms"], out["stats_365_old_lag_ms"] = await timed(old_stats)
        member = 1 + random.Random(1).randrange(5000)
        out["forget_me_ms"], out["forget_me_lag_ms"] = await timed(lambda: storage.forget_member(member))

        async def autocomplete() -> None:
            names = [i.name for i in store.list() if "v0" in i.name]
            assert names

        store._listing = None
        out["autocomplete_cold_ms"], out["autocomplete_cold_lag_ms"] = await timed(autocomplete)
        out["autocomplete_ms"], out["autocomplete_lag_ms"] = await timed(autocomplete)
    return out


# --- main ----------------------------------------------------------------------------------------------------------


async def main_async(args: argparse.Namespace) -> dict:
    result: dict = {"quick": args.quick, "cpus": os.cpu_count()}
    if args.debug_stalls:
        asyncio.get_running_loop().slow_callback_duration = 0.1
    if args.only == "load":
        result["load"] = await load(5.0 if args.quick else args.seconds, args.rate)
        print(json.dumps(result["load"], indent=1))
        return result
    if args.quick:
        hist = await history(2_000, 30_000, 100_000, 60)
    else:
        hist = await history(20_000, 300_000, 1_000_000, 365)
    result["history"] = hist
    if args.only == "history":
        print(json.dumps(hist, indent=1))
        return result
    h = hist
    print(
        f"(c) history {h['posts']:,} posts / {h['votes']:,} votes / {h['events']:,} events / {h['versions']} "
        f"versions: /stats 365 {h['stats_365_ms']:.0f} ms (loop lag {h['stats_365_lag_ms']:.1f} ms; before: "
        f"{h['stats_365_old_ms']:.0f} ms, lag {h['stats_365_old_lag_ms']:.0f} ms), /forget-me "
        f"{h['forget_me_ms']:.1f} ms (lag {h['forget_me_lag_ms']:.1f}), autocomplete cold "
        f"{h['autocomplete_cold_ms']:.1f} ms, cached {h['autocomplete_ms']:.2f} ms "
        f"(lag {h['autocomplete_lag_ms']:.1f})",
        flush=True,
    )
    ov = await overhead(6 if args.quick else 20)
    result["overhead"] = ov
    print(
        f"(b) overhead: bot path {ov['bot_s_per_post']:.3f} s/post, raw generate {ov['raw_s_per_post']:.3f} s "
        f"(2 candidates each, same seeds): ratio {ov['overhead_ratio']:.3f}",
        flush=True,
    )
    ld = await load(5.0 if args.quick else args.seconds, args.rate)
    result["load"] = ld
    print(
        f"(a) load {ld['events_sent']} events at {ld['events_per_s']:.0f}/s for {ld['seconds']:g}s "
        f"with {ld['posts_during_load']} posts, a swap (now {ld['adapter_after']}) and a training "
        f"({ld['training_during_load']}): stored {ld['events_stored']}, lost {ld['events_lost']}, votes exact "
        f"{ld['votes_exact']}; loop lag p99 {ld['lag_ms_p99']:.1f} ms, worst {ld['lag_ms_max']:.1f} ms",
        flush=True,
    )  # fmt: skip
    if ld["post_during_training_ratio"] is not None:
        print(
            f"(d) a post's generation: idle {ld['post_idle_s']:.3f} s, during a training "
            f"{ld['post_during_training_s']:.3f} s ({ld['post_during_training_ratio']:.2f}x, "
            f"{ld['posts_during_training']} posts)",
            flush=True,
        )
    result.update(
        {
            "events_per_s": ld["events_per_s"],
            "events_lost": ld["events_lost"],
            "lag_ms_p99": ld["lag_ms_p99"],
            "lag_ms_max": ld["lag_ms_max"],
            "overhead_ratio": ov["overhead_ratio"],
            "stats_365_ms": hist["stats_365_ms"],
            "forget_me_ms": hist["forget_me_ms"],
        }
    )
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a short run (5 s of load, a 2k-post history)")
    p.add_argument("--seconds", type=float, default=30.0, help="length of the load phase")
    p.add_argument("--rate", type=int, default=2000, help="reaction events injected per second")
    p.add_argument("--json", help="write the figures here")
    p.add_argument("--only", choices=["load", "overhead", "history"], help="run one part only")
    p.add_argument("--debug-stalls", action="store_true", help="log every loop callback that runs over 100 ms")
    args = p.parse_args()
    setup_logging("WARNING" if args.debug_stalls else "ERROR")
    result = asyncio.run(main_async(args), debug=args.debug_stalls)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
