"""End-to-end: two real `kilroy run` processes split two gateway shards against one fake Discord with four servers,
two on each shard. Each server's posts come only from the process holding its shard, each process's /healthz and
/metrics show its own shard, and a reaction reaches only the process holding the server's shard.

SQLite, one file per process (multi-process PostgreSQL comes with the storage backend)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.test_service import free_port, get, kilroy_run, wait_for, write_env
from tests.support import fake_discord as fd
from tests.support.e2e import running_bot

pytestmark = pytest.mark.slow

SHARDS = 2
# two servers on each shard: the fake's own two are on shard 0 ((id >> 22) % 2 == 0), two more on shard 1
GUILDS = {
    fd.GUILD_ID: fd.CHANNEL_ID,
    fd.GUILD2_ID: fd.CHANNEL2_ID,
    fd.guild_on_shard(1, SHARDS, 0): 2200,
    fd.guild_on_shard(1, SHARDS, 1): 2300,
}


def rows(db: Path, sql: str) -> list[tuple]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


async def test_two_processes_each_post_only_in_the_servers_of_their_shard(server, tiny_model_dir, tmp_path):
    server.shard_count = SHARDS
    for guild_id, channel_id in list(GUILDS.items())[2:]:
        server.add_guild(guild_id, channel_id)
    assert sorted(fd.shard_of(g, SHARDS) for g in GUILDS) == [0, 0, 1, 1]
    channels = ",".join(str(c) for c in GUILDS.values())
    procs = []
    for shard in range(SHARDS):
        home = tmp_path / f"shard{shard}"
        home.mkdir()
        port = free_port()
        env_file = write_env(
            home, tiny_model_dir, port,
            DISCORD_TOKEN=f"token-{shard}",  # the fake records which process sent each request by its token
            KILROY_GUILD_IDS=",".join(str(g) for g in GUILDS),
            KILROY_POST_CHANNEL_IDS=channels,
            KILROY_POST_INTERVAL_MINUTES="1",  # the first round posts right after READY (within its jitter)
            KILROY_SHARD_COUNT=str(SHARDS),
            KILROY_SHARD_IDS=str(shard),
        )  # fmt: skip
        procs.append((shard, env_file, f"http://127.0.0.1:{port}", home / "data" / "kilroy.db"))

    def owner(channel_id: int) -> int:
        guild = next(g for g, c in GUILDS.items() if c == channel_id)
        return fd.shard_of(guild, SHARDS)

    def decided() -> bool:
        """Every channel has a post, and each process has looked up (and skipped) the other's channels."""
        if not all(server.posts_in(c) for c in GUILDS.values()):
            return False
        looked_up = {(r.token, r.path) for r in server.requests if r.method == "GET"}
        return all(
            (f"token-{shard}", f"/channels/{c}") in looked_up
            for shard, *_ in procs
            for c in GUILDS.values()
            if owner(c) != shard
        )

    async with (
        kilroy_run(procs[0][1], server),
        kilroy_run(procs[1][1], server),
        aiohttp.ClientSession() as http,
    ):

        async def healthy():
            statuses = [await get(http, f"{base}/healthz") for _, _, base, _ in procs]
            return all(status == 200 for status, _ in statuses) and statuses

        statuses = await wait_for(healthy, 180, "both processes healthy")
        assert sorted(server.shards_connected) == [(0, SHARDS), (1, SHARDS)]
        for (shard, *_), (_, text) in zip(procs, statuses, strict=True):
            body = json.loads(text)
            assert body["shard_count"] == SHARDS
            assert [(s["id"], s["connected"], s["ready"], s["guilds"]) for s in body["shards"]] == [
                (shard, True, True, 2)
            ], body

        await wait_for(lambda: _async(decided()), 120, "a post in every channel, each process decided on all four")
        for channel_id in GUILDS.values():
            assert server.tokens_posting_in(channel_id) == {f"token-{owner(channel_id)}"}, channel_id
        for shard, _, base, db in procs:
            stored = rows(db, "SELECT guild_id, channel_id, message_id FROM posts")
            assert stored and {fd.shard_of(g, SHARDS) for g, _, _ in stored} == {shard}
            sent = {int(m["id"]) for c in GUILDS.values() if owner(c) == shard for m in server.posts_in(c)}
            assert {mid for _, _, mid in stored} <= sent
            _, metrics = await get(http, f"{base}/metrics")
            assert f'kilroy_gateway_connected{{shard="{shard}"}} 1.0' in metrics
            assert f'kilroy_gateway_guilds{{shard="{shard}"}} 2.0' in metrics
            assert f"kilroy_gateway_shard_count {float(SHARDS)}" in metrics
        # the slash commands are the application's: only the process holding shard 0 syncs them
        assert {r.token for r in server.requests if r.method == "PUT" and r.path.endswith("/commands")} <= {"token-0"}

        # a reaction on a post in a shard-1 server reaches only the shard-1 process
        post = server.posts_in(GUILDS[fd.guild_on_shard(1, SHARDS, 0)])[0]
        await server.react(int(post["id"]), fd.MEMBER_ID, "❤️")
        await wait_for(lambda: _async(rows(procs[1][3], "SELECT COUNT(*) FROM votes")[0][0] == 1), 30, "the vote")
        await asyncio.sleep(0.5)
        assert rows(procs[0][3], "SELECT COUNT(*) FROM votes")[0][0] == 0


async def test_by_default_one_process_holds_every_shard_discord_recommends(server, e2e_settings):
    """No KILROY_SHARD_COUNT: GET /gateway/bot says how many shards, and this process connects them all."""
    server.shard_count = SHARDS
    server.add_guild(fd.guild_on_shard(1, SHARDS, 0), 2200)
    settings = e2e_settings(KILROY_GUILD_IDS="")
    async with running_bot(settings, server) as bot:
        await wait_for(lambda: _async(bot.gateway_state().ready), 30, "every shard ready")
        state = bot.gateway_state()
        assert state.shard_count == SHARDS and bot.runs_database_jobs
        assert [(s.id, s.connected, s.guilds) for s in state.shards] == [(0, True, 2), (1, True, 1)]
        assert sorted(server.shards_connected) == [(0, SHARDS), (1, SHARDS)]
        assert all(bot.owns_guild(g) for g in (fd.GUILD_ID, fd.guild_on_shard(1, SHARDS, 0)))

        # one shard's outage: the gateway is not ready, naming that shard; the other stays connected
        await server.drop_shard(1)
        await wait_for(lambda: _async(not bot.gateway_state().connected), 30, "shard 1 seen down")
        state = bot.gateway_state()
        assert [(s.id, s.connected) for s in state.shards] == [(0, True), (1, False)]
        assert state.detail == "shard 1 not connected to the Discord gateway"
        server.gateway_down = False
        await wait_for(lambda: _async(bot.gateway_state().ready), 60, "shard 1 back")


async def _async(value):
    return value
