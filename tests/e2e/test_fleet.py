"""End-to-end, issue 25: the whole fleet at once. A real PostgreSQL, two real `kilroy run` processes (shard ids 0 and
1 of 2) sharing it (KILROY_DATABASE_URL) and one adapters folder, one real `kilroy worker` (KILROY_TRAINING_QUEUE=
postgres), against one fake Discord with four servers, two on each shard.

- every reaction event is stored exactly once (reactions on posts in all four servers, rows counted in PostgreSQL);
- each server's scheduled posts come only from the process holding its shard;
- a moderator's `/retrain` in a server on shard 1 is trained by the worker (not by the shard process), and its
  progress and result reach the moderator (the deferred answer is edited);
- the promoted adapter is served by both shard processes within 10 s (each logs the swap on the worker's notice).

The two failure cases of the issue are covered on the same real PostgreSQL and real `kilroy worker` processes in
tests/training/test_queue.py: a worker killed with SIGKILL mid-training loses nothing and its job is retried once
(`test_a_worker_killed_mid_training_loses_nothing_and_its_job_is_retried_once`), and two workers never train one
community at once (`test_two_workers_never_train_one_community_at_once`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from tests.e2e.test_service import ROOT, free_port, get, kilroy_run, wait_for, write_env
from tests.support import fake_discord as fd
from tests.support.adapters import make_adapter
from tests.support.data import OPEN_GATE

pytestmark = pytest.mark.slow

SHARDS = 2
# two servers on each shard: the fake's own two are on shard 0, two more on shard 1
GUILDS = {
    fd.GUILD_ID: fd.CHANNEL_ID,
    fd.GUILD2_ID: fd.CHANNEL2_ID,
    fd.guild_on_shard(1, SHARDS, 0): 2200,
    fd.guild_on_shard(1, SHARDS, 1): 2300,
}
RETRAIN_GUILD = fd.guild_on_shard(1, SHARDS, 0)
COMMUNITY = f"g{RETRAIN_GUILD}"

SHARED = {
    "KILROY_TRAINING_QUEUE": "postgres",
    "KILROY_MODERATOR_ROLE_IDS": str(fd.MODERATOR_ROLE),
    "KILROY_SETTLE_HOURS": "0",
    "KILROY_MIN_TRAIN_POSTS": "1",
    "KILROY_COMMUNITY_MIN_POSTS": "1",  # the shard-1 server trains its own lineage from its first post
    "KILROY_EPOCHS": "1",
    "KILROY_REWARD_MAX_P": "1",
    "KILROY_GATE_SAMPLES": "4",
    "KILROY_MAX_NEW_TOKENS": "16",
    "KILROY_AB_SHARE": "0",  # no trial: the worker promotes a gate-passing candidate by itself
    **OPEN_GATE,
}


def owner(channel_id: int) -> int:
    guild = next(g for g, c in GUILDS.items() if c == channel_id)
    return fd.shard_of(guild, SHARDS)


@contextlib.contextmanager
def kilroy_worker(env: dict[str, str], home: Path):
    """`kilroy worker` in a subprocess; SIGTERM (then SIGKILL) at the end; its log printed."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("KILROY_") and k != "DISCORD_TOKEN"}
    full |= {**env, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
    log_path = home / "worker.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "worker", "--name", "w1"], env=full, cwd=home, stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            yield proc, log_path
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    print(log_path.read_text(errors="replace")[-3000:])


@pytest.fixture
def database_url(postgres_server):
    url = postgres_server.new_database()
    yield url
    postgres_server.drop_database(url)


async def query(url: str, sql: str, *args) -> list[tuple]:
    conn = await asyncpg.connect(url)
    try:
        return [tuple(r) for r in await conn.fetch(sql, *args)]
    finally:
        await conn.close()


async def test_a_fleet_of_two_shards_and_a_worker_on_one_postgresql(server, tiny_settings, database_url, tmp_path):
    from bot.adapters.lineages import Lineages
    from bot.engine.model import load_base

    started = time.monotonic()
    settings = tiny_settings()
    tiny_model_dir = Path(settings.model.name)
    server.shard_count = SHARDS
    for guild_id, channel_id in list(GUILDS.items())[2:]:
        server.add_guild(guild_id, channel_id)
    # a moderator in the shard-1 server: its moderator role exists there
    server.extra_guilds[RETRAIN_GUILD]["roles"].append(fd._role(fd.MODERATOR_ROLE, "mods", "0", 2))
    server.members2[fd.MODERATOR_ID] = fd.member(fd.MODERATOR_ID, "moderator", roles=(fd.MODERATOR_ROLE,))
    assert sorted(fd.shard_of(g, SHARDS) for g in GUILDS) == [0, 0, 1, 1] and fd.shard_of(RETRAIN_GUILD, SHARDS) == 1
    adapters = tmp_path / "adapters"
    # the shard-1 server's lineage already serves v0001: both processes load it at start, so a promotion is a hot
    # swap in each (a lineage neither has loaded yet is read from its pointer when first used: nothing to swap)
    store = Lineages(adapters).store(COMMUNITY)
    make_adapter(load_base(settings.model, settings.data_dir, device="cpu"), store, 1)
    store.set_current("v0001")
    channels = ",".join(str(c) for c in GUILDS.values())
    procs = []
    for shard in range(SHARDS):
        home = tmp_path / f"shard{shard}"
        home.mkdir()
        port = free_port()
        env_file = write_env(
            home, tiny_model_dir, port,
            DISCORD_TOKEN=f"token-{shard}",  # the fake records which process sent each request by its token
            KILROY_ADAPTERS_DIR=str(adapters),  # one folder, shared with the other shard and the worker
            KILROY_DATABASE_URL=database_url,
            KILROY_GUILD_IDS=",".join(str(g) for g in GUILDS),
            KILROY_POST_CHANNEL_IDS=channels,
            KILROY_POST_INTERVAL_MINUTES="1",  # the first round posts right after READY (within its jitter)
            KILROY_SHARD_COUNT=str(SHARDS),
            KILROY_SHARD_IDS=str(shard),
            **SHARED,
        )  # fmt: skip
        procs.append((shard, env_file, f"http://127.0.0.1:{port}"))
    worker_home = tmp_path / "worker"
    worker_home.mkdir()
    worker_env = {
        "KILROY_MODEL": str(tiny_model_dir),
        "KILROY_DATA_DIR": str(worker_home / "data"),
        "KILROY_ADAPTERS_DIR": str(adapters),
        "KILROY_DATABASE_URL": database_url,
        **SHARED,
    }

    def log_of(shard: int) -> str:
        return procs[shard][1].with_suffix(".log").read_text(errors="replace")

    async with (
        kilroy_run(procs[0][1], server),
        kilroy_run(procs[1][1], server),
        aiohttp.ClientSession() as http,
    ):
        with kilroy_worker(worker_env, worker_home) as (worker, worker_log):

            async def healthy():
                return all([(await get(http, f"{base}/healthz"))[0] == 200 for *_, base in procs])

            await wait_for(healthy, 240, "both shard processes healthy")
            assert sorted(server.shards_connected) == [(0, SHARDS), (1, SHARDS)]

            # scheduled posts: one in every server, each sent by the process holding its shard only
            async def stored_everywhere():
                rows = await query(database_url, "SELECT DISTINCT guild_id FROM posts WHERE message_id IS NOT NULL")
                return {g for (g,) in rows} == set(GUILDS)

            await wait_for(stored_everywhere, 240, "a stored post in every server")
            for channel_id in GUILDS.values():
                assert server.tokens_posting_in(channel_id) == {f"token-{owner(channel_id)}"}, channel_id
            posts = await query(database_url, "SELECT guild_id, message_id FROM posts WHERE message_id IS NOT NULL")
            written = "SELECT DISTINCT adapter FROM posts WHERE guild_id = $1"
            assert await query(database_url, written, RETRAIN_GUILD) == [(f"{COMMUNITY}/v0001",)]
            assert len({m for _, m in posts}) == len(posts)  # no post stored twice
            for guild_id, message_id in posts:
                sent_by = {int(m["id"]) for m in server.posts_in(GUILDS[guild_id])}
                assert message_id in sent_by, (guild_id, message_id)

            # a reaction on one post in each server: stored exactly once, whichever process holds the server
            reacted = {g: next(m for gg, m in posts if gg == g) for g in GUILDS}
            for message_id in reacted.values():
                await server.react(message_id, fd.MEMBER_ID, "❤️")

            events = (
                "SELECT p.message_id, e.member_id, e.action FROM reaction_events e JOIN posts p ON p.id = e.post_id"
            )
            await wait_for(lambda: _async_len(query(database_url, events), len(GUILDS)), 60, "an event in every server")
            await asyncio.sleep(1.0)  # a duplicate write would land by now
            assert sorted(await query(database_url, events)) == sorted(
                (m, fd.MEMBER_ID, "add") for m in reacted.values()
            )
            votes = "SELECT p.message_id, v.member_id FROM votes v JOIN posts p ON p.id = v.post_id"
            assert sorted(await query(database_url, votes)) == sorted((m, fd.MEMBER_ID) for m in reacted.values())
            # a moderator's /retrain in a shard-1 server: the worker trains it, progress reaches the moderator
            _, token = await server.slash(
                fd.MODERATOR_ID, "retrain", guild_id=RETRAIN_GUILD, channel_id=GUILDS[RETRAIN_GUILD]
            )

            async def retrained():
                edits = server.original_edits.get(token, [])
                last = (edits[-1].get("content") or "") if edits else ""
                return "Adapter" in last or "Nothing to train" in last  # the result, either way

            await wait_for(retrained, 600, "/retrain in the shard-1 server finished")
            done_at = time.monotonic()
            contents = [e.get("content") or "" for e in server.original_edits[token]]
            assert any(c.startswith(("training", "evaluating")) for c in contents[:-1]), contents  # progress
            assert "v0002" in contents[-1] and "promoted and now serving" in contents[-1], contents
            assert worker.poll() is None
            # trained by the worker: the job went through the queue (only `kilroy worker` runs its jobs) and succeeded
            jobs = await query(database_url, "SELECT status::text, args->>'community' FROM procrastinate_jobs")
            assert jobs == [("succeeded", COMMUNITY)], jobs
            runs = await query(database_url, "SELECT community, status, stage FROM training_runs")
            assert runs == [(COMMUNITY, "done", "promoted")], runs
            assert (adapters / COMMUNITY / "v0002").is_dir() and store.current() == "v0002"

            # the promotion reaches both shard processes, which swap without a restart, within 10 s
            swap = f"serving v0002 for {COMMUNITY}, promoted by a training worker"
            while not all(swap in log_of(s) for s in range(SHARDS)) and time.monotonic() - done_at < 10:  # noqa: ASYNC110 - other processes log
                await asyncio.sleep(0.1)
            assert [swap in log_of(s) for s in range(SHARDS)] == [True, True]
            # and within 10 s of the worker's promotion (the logs' HH:MM:SS, one clock)
            promoted = logged_at(worker_log.read_text(errors="replace"), "v0002 promoted and serving")
            lags = [(logged_at(log_of(s), swap) - promoted) % 86400 for s in range(SHARDS)]
            assert all(lag <= 10 for lag in lags), lags
            print(f"fleet test: swapped in both {lags} s after the worker promoted")
    print(f"fleet test took {time.monotonic() - started:.0f}s")


def logged_at(log: str, needle: str) -> int:
    """The second of the day (from the HH:MM:SS a log line starts with) of the first line holding `needle`."""
    line = next(ln for ln in log.splitlines() if needle in ln)
    h, m, sec = (int(x) for x in line[:8].split(":"))
    return h * 3600 + m * 60 + sec


async def _async_len(rows, n: int) -> bool:
    return len(await rows) >= n
