"""When one machine is not enough: PostgreSQL against SQLite, the single-process limit, and training capacity.

    PYTHONPATH=. nice -n 5 python benchmarks/scale.py [--quick] [--json PATH] [--skip ingest,history,gateway,training]

Starts its own PostgreSQL server (tests/support/postgres.py: the installed binaries, a unix socket, in /dev/shm
where there is one) and puts the SQLite files on the same file system. The test server runs without fsync; here
it is switched back on (fsync, full_page_writes) with `synchronous_commit=off`, the durability SQLite's WAL with
`synchronous=NORMAL` has (a crash loses the last commits, never the database). Every ratio is against SQLite,
measured in the same run.

1. ingest: reaction events into storage through the group-commit writer (`add_vote`/`remove_vote`, one task an
   event as a listener makes them; benchmarks/votes.py's events and injector): a burst of events at once
   (throughput), then offered rates stepped up (1,000/s doubling), each for a few seconds, with the event loop's
   lag p50/p99 (a 10 ms ticker). The storage limit is the highest step that keeps up (>= 90% of the offered rate)
   with p99 lag <= 50 ms.
2. gateway: the same steps through the real bot (discord.py client, the tiny model loaded, the loopback fake
   Discord in the same process and loop, so the figures include the cost of producing the events): the
   single-process limit a real bot meets first. Posts/hour at that limit: events/s x 3600 / --events-per-post
   (reactions and replies a post brings, default 20: an assumption, printed with the figure). The model thread
   bounds posts/hour first on GPT-2's 124M shape: see 4.
3. history: benchmarks/service.py's 20k-post history (20k posts, 300k votes, 1M reaction events) built in SQLite,
   copied into PostgreSQL by `migrate_db` (timed), then `/stats 365` (`Storage.stats_summary`) and forget-me
   (`Storage.forget_member`, a different member each time), median of 3, with the worst loop lag.
4. training: one community's night (`train_adapter` with the shipped settings: one channel posting hourly, 24
   posts, batch 16, the gate's 256 samples a model) on the tiny model (the test suite's preset), timed whole, in a
   fresh process using every core as a dedicated worker would; on GPT-2's 124M shape (random init, no hub) only a
   few pieces are measured (a training step, a 16-sample draw, a 16-sample scoring pass) and the night is
   extrapolated from them, stated so. Communities a night = the night budget (--night-hours, default 6) / one
   community's night. Also one 60-token post at batch 1 on the 124M shape: the posts/hour one process's model
   thread can make.

`--quick`: fewer, shorter steps, a 2k-post history, and the 124M pieces skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

from benchmarks.service import LagTicker, bench_settings, build_history, timed
from benchmarks.votes import inject, make_events, new_path
from bot.domain.scoring import ScoreFormula
from bot.storage import NewPost, Storage
from tests.support.postgres import PostgresServer, start_server

ROOT = Path(__file__).resolve().parents[1]
LAG_LIMIT_MS = 50.0
KEEP_UP = 0.9  # a step keeps up when at least this share of the offered rate is stored in its time


def lag_stats(ticker: LagTicker) -> dict[str, float]:
    lags = sorted(ticker.lags) or [0.0]
    return {"lag_p50_ms": statistics.median(lags), "lag_p99_ms": ticker.p99(), "lag_max_ms": lags[-1]}


async def production_durability(server: PostgresServer) -> None:
    """fsync and full-page writes on again (the test server turns them off); commits stay asynchronous."""
    con = await asyncpg.connect(server.url("postgres"))
    try:
        for name, value in (("fsync", "on"), ("full_page_writes", "on"), ("synchronous_commit", "off")):
            await con.execute(f"ALTER SYSTEM SET {name} = '{value}'")
        await con.execute("SELECT pg_reload_conf()")
    finally:
        await con.close()


class Backends:
    """A fresh database per measurement: a SQLite file beside the server's data, or a PostgreSQL database."""

    def __init__(self, server: PostgresServer) -> None:
        self.server = server
        near = server.root.parent if server.root is not None else None
        self.tmp = Path(tempfile.mkdtemp(prefix="kilroy-scale-", dir=near))
        self._n = 0

    def fresh(self, backend: str) -> Path | str:
        self._n += 1
        return self.tmp / f"k{self._n}.db" if backend == "sqlite" else self.server.new_database()


# --- 1. ingest: the group-commit writer on both backends ------------------------------------------------------------


async def ingest_once(target: Path | str, events: list, rate: float) -> dict[str, Any]:
    """Inject `events` at `rate` (inf: all at once) into a fresh database; events/s until all are stored, lag."""
    async with Storage.open(target) as s:
        for mid in range(1, 51):
            await s.add_post(NewPost(channel_id=1, text="p", adapter="base", created_at=0.0, message_id=mid))
        await asyncio.sleep(0.05)
        with LagTicker() as ticker:
            await asyncio.sleep(0.02)
            start = time.perf_counter()
            await inject(lambda e: new_path(s, e), events, rate)
            took = time.perf_counter() - start
        logged = (await s.db.execute_fetchall("SELECT COUNT(*) FROM reaction_events"))[0][0]
    return {"events": len(events), "stored": int(logged), "events_per_s": len(events) / took, **lag_stats(ticker)}


def limit(steps: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The highest step below the first that falls behind or lags past 50 ms p99 (None if the first already does)."""
    best = None
    for step in steps:
        if step["events_per_s"] < KEEP_UP * step["offered"] or step["lag_p99_ms"] > LAG_LIMIT_MS:
            break
        best = step
    return best


async def idle_lag(seconds: float = 2.0) -> dict[str, float]:
    """The loop's lag doing nothing: the machine's own noise, the baseline for every lag below."""
    with LagTicker() as ticker:
        await asyncio.sleep(seconds)
    return lag_stats(ticker)


async def ingest(backends: Backends, quick: bool) -> dict[str, Any]:
    """The burst, then each offered rate on SQLite then PostgreSQL (interleaved, so both meet the same load)."""
    out: dict[str, Any] = {"idle": await idle_lag()}
    burst = make_events(5_000 if quick else 20_000)
    rates = [1000, 4000, 16000] if quick else [1000, 2000, 4000, 8000, 16000, 32000]
    seconds = 1.5 if quick else 4.0
    both = ("sqlite", "postgresql")
    for backend in both:
        out[backend] = {"burst": await ingest_once(backends.fresh(backend), burst, math.inf), "steps": []}
        print(f"  ingest {backend:10} burst of {len(burst):,}: {out[backend]['burst']['events_per_s']:,.0f}/s")
    for rate in rates:
        for backend in both:
            step = await ingest_once(backends.fresh(backend), make_events(int(rate * seconds), seed=rate), rate)
            step["offered"] = rate
            out[backend]["steps"].append(step)
            print(
                f"  ingest {backend:10} {rate:6,}/s offered: {step['events_per_s']:7,.0f}/s stored, lag p50 "
                f"{step['lag_p50_ms']:5.1f} p99 {step['lag_p99_ms']:6.1f} max {step['lag_max_ms']:6.1f} ms",
                flush=True,
            )
        if all(out[b]["steps"][-1]["events_per_s"] < 0.5 * rate for b in both):
            break  # both far behind: higher steps only take longer
    for backend in both:
        out[backend]["limit"] = limit(out[backend]["steps"])
    return out


# --- 2. gateway: the same steps through the real bot --------------------------------------------------------------


async def gateway(backends: Backends, quick: bool) -> dict[str, Any]:
    import random

    import yarl
    from discord.gateway import DiscordWebSocket
    from discord.http import Route

    from bot.config.env import Secret
    from tests.support import e2e, fake_discord as fd

    rates = [100, 400] if quick else [100, 250, 500, 1000, 2000]
    seconds = 1.5 if quick else 4.0
    out: dict[str, Any] = {}
    for backend in ("sqlite", "postgresql"):
        tmp = Path(tempfile.mkdtemp(prefix="kilroy-scale-bot-", dir=backends.tmp))
        settings = bench_settings(tmp)
        if backend == "postgresql":
            settings = settings.replace(database_url=Secret(str(backends.fresh(backend))))
        server = fd.FakeDiscord()
        await server.start()
        Route.BASE = server.base_url
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(server.gateway_url)
        steps = []
        try:
            async with e2e.running_bot(settings, server, freeze_heap=True, ready_timeout=60) as bot:
                storage = bot.services.storage
                message_ids = []
                for i in range(50):
                    mid = fd.snowflake()
                    server.messages[mid] = server._message(mid, fd.user(fd.BOT_ID, "kilroy", bot=True), f"post {i}")
                    await storage.add_post(
                        NewPost(fd.CHANNEL_ID, f"post {i}", "base", time.time(), message_id=mid, guild_id=fd.GUILD_ID)
                    )
                    message_ids.append(mid)
                people = [7_000_000 + i for i in range(200)]
                for uid in people:
                    server.members.setdefault(uid, fd.member(uid, f"m{uid}"))
                rng = random.Random(0)
                present: set[tuple[int, int, str]] = set()
                for rate in rates:
                    before = (await storage.db.execute_fetchall("SELECT COUNT(*) FROM reaction_events"))[0][0]
                    n = int(rate * seconds)
                    with LagTicker() as ticker:
                        await asyncio.sleep(0.02)
                        start, sent = time.perf_counter(), 0
                        while sent < n:
                            due = min(n, int((time.perf_counter() - start) * rate) + 1) - sent
                            for _ in range(due):
                                key = (rng.choice(message_ids), rng.choice(people), rng.choice(["❤️", "👍"]))
                                add = key not in present
                                (present.add if add else present.discard)(key)
                                await server.react(*key, add=add)
                                sent += 1
                            await asyncio.sleep(0.002)
                        deadline = time.monotonic() + 60
                        while True:
                            rows = await storage.db.execute_fetchall("SELECT COUNT(*) FROM reaction_events")
                            stored = rows[0][0] - before
                            if stored >= n or time.monotonic() > deadline:
                                break
                            await asyncio.sleep(0.005)
                        took = time.perf_counter() - start
                    step = {"offered": rate, "events": n, "stored": stored, "events_per_s": stored / took}
                    step.update(lag_stats(ticker))
                    steps.append(step)
                    print(
                        f"  gateway {backend:10} {rate:5,}/s offered: {step['events_per_s']:6,.0f}/s stored "
                        f"({stored}/{n}), lag p50 {step['lag_p50_ms']:5.1f} p99 {step['lag_p99_ms']:6.1f} ms",
                        flush=True,
                    )
                    if step["events_per_s"] < 0.5 * rate:
                        break
        finally:
            await server.stop()
        out[backend] = {"steps": steps, "limit": limit(steps)}
    return out


# --- 3. history: /stats 365 and forget-me on the 20k-post history --------------------------------------------------


async def history(backends: Backends, quick: bool) -> dict[str, Any]:
    from bot.ops.migrate_db import migrate_db

    posts, votes, events = (2_000, 30_000, 100_000) if quick else (20_000, 300_000, 1_000_000)
    db = backends.fresh("sqlite")
    async with Storage.open(db):
        pass  # the migrated schema
    await asyncio.to_thread(build_history, db, posts, votes, events)
    url = backends.server.new_database(migrated=False)
    t = time.perf_counter()
    await migrate_db(db, url)
    out: dict[str, Any] = {"posts": posts, "votes": votes, "events": events, "migrate_db_s": time.perf_counter() - t}
    print(f"  history: {posts:,} posts, {votes:,} votes, {events:,} events; migrate-db {out['migrate_db_s']:.1f} s")
    f = ScoreFormula()
    for backend, target in (("sqlite", db), ("postgresql", url)):
        async with Storage.open(target) as s:
            stats, forget = [], []
            for i in range(3):
                stats.append(
                    await timed(
                        lambda s=s: s.stats_summary(
                            created_after=time.time() - 365 * 86400,
                            guild_id=1,
                            emoji_weights=f.emoji_weights,
                            default_weight=f.default_emoji_weight,
                            reply_weight=f.reply_weight,
                        )
                    )
                )
                forget.append(await timed(lambda s=s, m=101 + 997 * i: s.forget_member(m, at=time.time())))
        out[backend] = {
            "stats_365_ms": statistics.median(x[0] for x in stats),
            "stats_365_lag_ms": max(x[1] for x in stats),
            "forget_me_ms": statistics.median(x[0] for x in forget),
            "forget_me_lag_ms": max(x[1] for x in forget),
        }
        r = out[backend]
        print(
            f"  history {backend:10} /stats 365 {r['stats_365_ms']:7.1f} ms (worst lag {r['stats_365_lag_ms']:.1f}), "
            f"forget-me {r['forget_me_ms']:7.1f} ms (worst lag {r['forget_me_lag_ms']:.1f})",
            flush=True,
        )
    return out


# --- 4. training: communities one worker trains a night ------------------------------------------------------------


def synthetic_posts(model: str, posts: int, tokens: int) -> list[Any]:
    """`posts` training examples of `tokens` random token ids (within the model's vocabulary), rewards +-1."""
    import random

    from bot.training.dataset import TrainingExample

    vocab = json.loads((Path(model) / "config.json").read_text())["vocab_size"]
    rng = random.Random(0)
    return [
        TrainingExample(i, (0,), tuple(rng.randrange(1, vocab) for _ in range(tokens)), rng.choice((-1.0, 1.0)))
        for i in range(posts)
    ]


def night_child(model: str, posts: int, tokens: int) -> dict[str, Any]:
    """One community's night through `train_adapter` with the shipped training settings, timed by stage."""
    from bot.config.settings import GenerationSettings, ModelSettings, TrainingSettings
    from bot.training.trainer import train_adapter

    examples = synthetic_posts(model, posts, tokens)
    marks: dict[str, float] = {}

    def progress(event: Any) -> None:
        marks.setdefault(getattr(event, "stage", None) or "other", time.perf_counter())

    started, cpu = time.perf_counter(), time.process_time()
    candidate = train_adapter(
        examples,
        model_settings=ModelSettings(name=model),
        training=TrainingSettings(),
        generation=GenerationSettings(max_new_tokens=tokens),
        data_dir=Path(tempfile.mkdtemp()),
        parent_path=None,
        out_dir=Path(tempfile.mkdtemp()),
        on_progress=progress,
    )
    ended = time.perf_counter()
    return {
        "night_s": ended - started,
        "night_cpu_s": time.process_time() - cpu,  # all threads' CPU time: steadier than wall time on a shared machine
        "load_s": marks.get("train", ended) - started,
        "evaluate_s": ended - marks.get("evaluate", ended),
        "steps": math.ceil(posts / TrainingSettings().batch_size),
        "gate_samples": TrainingSettings().gate_samples,
        "loss": candidate.metrics["loss"],
    }


def pieces_child(tokenizer_dir: str, tokens: int, steps: int) -> dict[str, Any]:
    """GPT-2-124M-shaped pieces of a night: a training step (batch 16: forward with and without the adapter,
    backward, AdamW), a 16-sample draw of `tokens` tokens, a 16-sample scoring pass (the gate's KL)."""
    import torch
    from peft import get_peft_model
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from bot.config.settings import GenerationSettings, ModelSettings, TrainingSettings
    from bot.engine.generator import SamplingParams, sample_batch
    from bot.engine.model import lora_config
    from bot.training.objective import kl_per_sequence, reward_weighted_loss
    from bot.training.trainer import _batch, _sequence_stats

    t, c = time.perf_counter(), time.process_time()
    torch.manual_seed(0)
    # built in memory (random init, no hub), with the tiny model's tokenizer: the shape sets the cost
    model_ = GPT2LMHeadModel(GPT2Config(vocab_size=50257, bos_token_id=0, eos_token_id=0, pad_token_id=0)).eval()
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    load_s = time.perf_counter() - t
    peft_model = get_peft_model(model_, lora_config(ModelSettings())).eval()
    context_size = model_.config.n_positions
    training = TrainingSettings()
    batch = synthetic_posts(tokenizer_dir, training.batch_size, tokens)  # ids within the tokenizer's vocabulary
    params = [p for p in peft_model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=training.learning_rate)
    step_s, step_cpu = [], []
    for _ in range(steps):
        t, c = time.perf_counter(), time.process_time()
        ids, attn, labels, adv = _batch(batch, tokenizer.pad_token_id, "cpu")
        logp, ref_logp, mask = _sequence_stats(peft_model, ids, attn, labels)
        loss = reward_weighted_loss(logp.sum(-1) / tokens, adv, kl_per_sequence(logp, ref_logp, mask), 0.1)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        step_s.append(time.perf_counter() - t)
        step_cpu.append(time.process_time() - c)
    t, c = time.perf_counter(), time.process_time()
    torch.manual_seed(0)
    sample_batch(
        peft_model,
        tokenizer,
        prompt="",
        n=16,
        params=SamplingParams.from_settings(GenerationSettings(max_new_tokens=tokens, no_repeat_ngram=0)),
        stop_at_newline=False,  # random weights rarely stop: every sample runs its full length, an upper bound
        context_size=context_size,
        adapter="x",
    )
    draw_s, draw_cpu = time.perf_counter() - t, time.process_time() - c
    t, c = time.perf_counter(), time.process_time()
    sample_batch(
        peft_model,
        tokenizer,
        prompt="",
        n=1,
        params=SamplingParams.from_settings(GenerationSettings(max_new_tokens=tokens, no_repeat_ngram=0)),
        stop_at_newline=False,
        context_size=context_size,
        adapter="x",
    )
    post_s, post_cpu = time.perf_counter() - t, time.process_time() - c
    t, c = time.perf_counter(), time.process_time()
    with torch.no_grad():
        ids, attn, labels, _ = _batch(batch, tokenizer.pad_token_id, "cpu")
        _sequence_stats(peft_model, ids, attn, labels)
    score_s, score_cpu = time.perf_counter() - t, time.process_time() - c
    return {"load_s": load_s, "step_s": statistics.median(step_s), "steps_measured": steps, "draw16_s": draw_s,
            "post_s": post_s, "score16_s": score_s, "step_cpu_s": statistics.median(step_cpu),
            "draw16_cpu_s": draw_cpu, "post_cpu_s": post_cpu, "score16_cpu_s": score_cpu}  # fmt: skip


def _child(*args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "TOKENIZERS_PARALLELISM": "false",
            "TRANSFORMERS_VERBOSITY": "error",
        },
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child {args[0]} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def training(quick: bool, night_hours: float, posts: int, tokens: int) -> dict[str, Any]:
    from benchmarks.service import model_dir

    budget = night_hours * 3600
    # the test suite's tiny preset (2 layers, 64 wide, built once; KILROY_TEST_MODEL_CACHE): the shipped one (4 x 128)
    # takes minutes to pretrain, longer than this benchmark on a loaded machine
    tiny = str(model_dir())
    out: dict[str, Any] = {"night_hours": night_hours, "posts": posts, "tokens": tokens}
    night = _child("night", tiny, str(posts), str(tokens))
    night["communities_per_night"] = budget / night["night_s"]
    # on an idle 2-core machine a night takes between its CPU time over two cores and its CPU time on one
    night["communities_per_night_idle"] = (budget / night["night_cpu_s"], 2 * budget / night["night_cpu_s"])
    out["tiny"] = night
    print(
        f"  training tiny: one community's night {night['night_s']:.1f} s, {night['night_cpu_s']:.1f} CPU s -> "
        f"{night['communities_per_night']:,.0f} communities in {night_hours:g} h",
        flush=True,
    )
    if quick:
        return out
    out["gpt2_124m"] = extrapolate(_child("pieces", tiny, str(tokens), "2"), night, budget)
    p = out["gpt2_124m"]
    print(
        f"  training 124M shape: step {p['step_s']:.1f} s, 16-sample draw {p['draw16_s']:.1f} s, scoring "
        f"{p['score16_s']:.1f} s -> one night ~{p['night_s_extrapolated']:.0f} s (extrapolated) -> "
        f"{p['communities_per_night']:,.1f} communities in {night_hours:g} h",
        flush=True,
    )
    return out


def extrapolate(p: dict[str, Any], night: dict[str, Any], budget: float) -> dict[str, Any]:
    """A 124M night from its measured pieces (not measured whole): load + the night's steps + the gate's three
    draws of its samples (linear in the batch from 16-sample draws: an upper bound on a CPU) + its scoring pass."""
    scale = night["gate_samples"] / 16
    p["night_s_extrapolated"] = (
        p["load_s"] + night["steps"] * p["step_s"] + 3 * scale * p["draw16_s"] + scale * p["score16_s"]
    )
    p["communities_per_night"] = budget / p["night_s_extrapolated"]
    cpu = night["steps"] * p["step_cpu_s"] + 3 * scale * p["draw16_cpu_s"] + scale * p["score16_cpu_s"]
    p["night_cpu_s_extrapolated"] = cpu
    p["communities_per_night_idle"] = (budget / cpu, 2 * budget / cpu)
    return p


# --- the table -----------------------------------------------------------------------------------------------------


def table(r: dict[str, Any]) -> str:
    rows = ["| measure | SQLite | PostgreSQL | PostgreSQL / SQLite |", "|---|---:|---:|---:|"]

    def row(name: str, a: float | None, b: float | None, fmt: str = "{:,.0f}") -> None:
        ratio = f"x{b / a:.2f}" if a and b is not None else "-"
        rows.append(
            f"| {name} | {fmt.format(a) if a is not None else '-'} | {fmt.format(b) if b is not None else '-'} "
            f"| {ratio} |"
        )

    def lag_row(s: dict[str, Any], p: dict[str, Any]) -> None:
        rows.append(
            f"|   loop lag p50 / p99 (ms) | {s['lag_p50_ms']:.1f} / {s['lag_p99_ms']:.1f} "
            f"| {p['lag_p50_ms']:.1f} / {p['lag_p99_ms']:.1f} | - |"
        )

    if "ingest" in r:
        i = r["ingest"]
        idle = i["idle"]
        rows.append(
            f"| loop lag idle, p50 / p99 (ms): the machine's noise | {idle['lag_p50_ms']:.1f} / "
            f"{idle['lag_p99_ms']:.1f} | (same loop) | - |"
        )
        row("reaction events/s, a burst at once", i["sqlite"]["burst"]["events_per_s"],
            i["postgresql"]["burst"]["events_per_s"])  # fmt: skip
        for s, p in zip(i["sqlite"]["steps"], i["postgresql"]["steps"], strict=False):
            row(f"events/s stored at {s['offered']:,}/s offered", s["events_per_s"], p["events_per_s"])
            lag_row(s, p)
        ls, lp = i["sqlite"]["limit"], i["postgresql"]["limit"]
        row("storage limit: highest step kept up, p99 lag <= 50 ms (events/s)", ls and ls["offered"],
            lp and lp["offered"])  # fmt: skip
    if "gateway" in r:
        g = r["gateway"]
        for s, p in zip(g["sqlite"]["steps"], g["postgresql"]["steps"], strict=False):
            row(f"bot (gateway) events/s stored at {s['offered']:,}/s offered", s["events_per_s"], p["events_per_s"])
            lag_row(s, p)
        ls, lp = g["sqlite"]["limit"], g["postgresql"]["limit"]
        row("single-process limit: events/s (highest step kept up, p99 lag <= 50 ms)", ls and ls["offered"],
            lp and lp["offered"])  # fmt: skip
        per = r["events_per_post"]
        row(f"  as posts/hour, at {per} events a post (assumed)", ls and ls["offered"] * 3600 / per,
            lp and lp["offered"] * 3600 / per)  # fmt: skip
    if "history" in r:
        h = r["history"]
        s, p = h["sqlite"], h["postgresql"]
        row(f"/stats 365 on {h['posts']:,} posts (ms)", s["stats_365_ms"], p["stats_365_ms"], "{:,.1f}")
        row("  worst loop lag during it (ms)", s["stats_365_lag_ms"], p["stats_365_lag_ms"], "{:,.1f}")
        row("forget-me (ms)", s["forget_me_ms"], p["forget_me_ms"], "{:,.1f}")
        row("  worst loop lag during it (ms)", s["forget_me_lag_ms"], p["forget_me_lag_ms"], "{:,.1f}")
    lines = ["\n".join(rows)]
    if "history" in r:
        lines.append(f"kilroy migrate-db of that history: {r['history']['migrate_db_s']:.1f} s")
    if "training" in r:
        t = r["training"]
        lines.append(
            f"training, one community's night ({t['posts']} posts of {t['tokens']} tokens, shipped settings), one "
            f"2-core worker, {t['night_hours']:g} h a night:"
        )
        n = t["tiny"]
        lo, hi = n["communities_per_night_idle"]
        lines.append(
            f"  tiny model, measured: {n['night_s']:.1f} s ({n['night_cpu_s']:.1f} CPU s) -> "
            f"{n['communities_per_night']:,.0f} communities a night here; {lo:,.0f}-{hi:,.0f} on an idle 2-core "
            "machine (CPU time on one core .. on two)"
        )
        if "gpt2_124m" in t:
            g = t["gpt2_124m"]
            lines.append(
                f"  GPT-2 124M shape, EXTRAPOLATED from {g['steps_measured']} measured steps ({g['step_s']:.1f} s "
                f"each) and 16-sample draws ({g['draw16_s']:.1f} s): ~{g['night_s_extrapolated']:.0f} s -> "
                f"{g['communities_per_night']:,.1f} communities a night here; "
                f"{g['communities_per_night_idle'][0]:,.0f}-{g['communities_per_night_idle'][1]:,.0f} on an idle "
                f"2-core machine (from {g['night_cpu_s_extrapolated']:,.0f} CPU s, the load left out)"
            )
            lines.append(
                f"  GPT-2 124M shape, one {t['tokens']}-token post at batch 1 (measured): {g['post_s']:.1f} s -> at "
                f"most {3600 / g['post_s']:,.0f} posts/hour a process with its model thread busy all the time"
            )
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    skip = set(filter(None, args.skip.split(",")))
    result: dict[str, Any] = {"quick": args.quick, "cpus": os.cpu_count(), "load_before": os.getloadavg(),
                              "events_per_post": args.events_per_post}  # fmt: skip
    server = await asyncio.to_thread(start_server)
    backends = None
    try:
        await production_durability(server)
        backends = Backends(server)
        con = await asyncpg.connect(server.url("postgres"))
        result["postgresql"] = await con.fetchval("SHOW server_version")
        await con.close()
        print(f"PostgreSQL {result['postgresql']} (fsync on, synchronous_commit off); SQLite in {backends.tmp}")
        if "ingest" not in skip:
            result["ingest"] = await ingest(backends, args.quick)
        if "gateway" not in skip:
            result["gateway"] = await gateway(backends, args.quick)
        if "history" not in skip:
            result["history"] = await history(backends, args.quick)
    finally:
        await asyncio.to_thread(server.stop)
        if backends is not None:  # the SQLite files live in /dev/shm where there is one: memory
            shutil.rmtree(backends.tmp, ignore_errors=True)
    if "training" not in skip:
        result["training"] = await asyncio.to_thread(training, args.quick, args.night_hours, args.posts, args.tokens)
    result["load_after"] = os.getloadavg()
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="short steps, a 2k-post history, no 124M pieces")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--skip", default="", help="comma-separated parts to skip: ingest,gateway,history,training")
    p.add_argument("--night-hours", type=float, default=6.0, help="the training window a night")
    p.add_argument("--posts", type=int, default=24, help="one community's posts a night (one channel, hourly)")
    p.add_argument("--events-per-post", type=int, default=20, help="reactions and replies a post brings (assumed)")
    p.add_argument("--tokens", type=int, default=60, help="tokens a post (KILROY_MAX_NEW_TOKENS)")
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "night":
            print(json.dumps(night_child(rest[0], int(rest[1]), int(rest[2]))))
        else:
            print(json.dumps(pieces_child(rest[0], int(rest[1]), int(rest[2]))))
        return
    result = asyncio.run(run(args))
    print(f"\nload average before {result['load_before'][0]:.1f}, after {result['load_after'][0]:.1f}\n")
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
