"""End-to-end: the real `kilroy run` (a subprocess, settings from --env-file) against the fake Discord, probed over
HTTP like a supervisor and Prometheus would: readiness follows the gateway, metrics move, the dashboard is locked."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sqlite3
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from tests.support import fake_discord as fd

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "e2e-dashboard-token-of-32-characters-or-more"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_env(tmp_path: Path, model_dir: Path, port: int, **extra: str) -> Path:
    env = {
        "DISCORD_TOKEN": "fake-token",
        "KILROY_MODEL": str(model_dir),
        "KILROY_DATA_DIR": str(tmp_path / "data"),
        "KILROY_ADAPTERS_DIR": str(tmp_path / "adapters"),
        "KILROY_GUILD_IDS": str(fd.GUILD_ID),
        "KILROY_HTTP_PORT": str(port),
        "KILROY_DASHBOARD_TOKEN": TOKEN,
        "KILROY_MAX_NEW_TOKENS": "16",
        **extra,
    }
    path = tmp_path / "kilroy.env"
    path.write_text("".join(f"{k}={v}\n" for k, v in env.items()), encoding="utf-8")
    return path


@contextlib.asynccontextmanager
async def kilroy_run(env_file: Path, server: fd.FakeDiscord):
    """`kilroy --env-file FILE run` in a subprocess; SIGTERM on exit, and it must stop cleanly."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KILROY_")}
    env.update(FAKE_DISCORD_URL=f"http://127.0.0.1:{server.port}", PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    log = env_file.with_suffix(".log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.e2e.kilroy_run", "--env-file", str(env_file), "run",
        cwd=ROOT, env=env, stdout=log, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        log.close()
        print(env_file.with_suffix(".log").read_text(errors="replace")[-3000:])
    assert proc.returncode == 0, "kilroy run did not stop cleanly on SIGTERM"


async def get(session: aiohttp.ClientSession, url: str, **kw) -> tuple[int, str]:
    async with session.get(url, **kw) as r:
        return r.status, await r.text()


async def wait_for(check, timeout: float, what: str):  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        with contextlib.suppress(aiohttp.ClientError):
            last = await check()
            if last:
                return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what}: not reached in {timeout}s (last: {last!r})")


def metric(text: str, name: str) -> float:
    """Sum of every sample of a metric family."""
    return sum(float(v) for v in re.findall(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, flags=re.M))


async def test_health_metrics_and_dashboard_of_a_real_kilroy_run(server, tiny_model_dir, tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env_file = write_env(
        tmp_path,
        tiny_model_dir,
        port,
        KILROY_POST_CHANNEL_IDS=str(fd.CHANNEL_ID),
        KILROY_POST_INTERVAL_MINUTES="1",  # the first round posts right after READY (within its jitter)
    )
    server.ready_gate.clear()  # Discord slow at first: the socket opens, READY does not come
    async with kilroy_run(env_file, server), aiohttp.ClientSession() as http:

        async def health():
            status, body = await get(http, f"{base}/healthz")
            return (status, body) if "gateway" in body else None

        status, body = await wait_for(health, 120, "/healthz answering")
        assert status == 503 and "gateway" in body

        # services up but the gateway refused: 503 naming the gateway, the database and adapter are fine
        async def unready_services_up():
            status, body = await get(http, f"{base}/healthz")
            return status == 503 and '"failing": ["gateway"]' in body

        await wait_for(unready_services_up, 120, "503 naming only the gateway")

        server.ready_gate.set()

        async def healthy():
            return (await get(http, f"{base}/healthz"))[0] == 200

        await wait_for(healthy, 60, "200 once the gateway is ready")

        # a scheduled post lands, then a member reacts: the counters move
        _, before = await get(http, f"{base}/metrics")
        await wait_for(lambda: _async(bool(server.posts_by_bot())), 60, "a scheduled post")
        mid = int(server.posts_by_bot()[0]["id"])

        async def post_counted():
            return metric((await get(http, f"{base}/metrics"))[1], "kilroy_posts_total") >= 1

        await wait_for(post_counted, 30, "kilroy_posts_total moving")
        await server.react(mid, fd.MEMBER_ID, "❤️")

        async def reaction_counted():
            return metric((await get(http, f"{base}/metrics"))[1], "kilroy_reaction_events_total") >= 1

        await wait_for(reaction_counted, 30, "kilroy_reaction_events_total moving")
        _, after = await get(http, f"{base}/metrics")
        assert metric(before, "kilroy_reaction_events_total") == 0
        assert metric(after, "kilroy_generation_seconds_count") >= 1
        names = set(re.findall(r"^([a-z_]+)(?:{| )", after, flags=re.M))
        assert names and all(n.startswith("kilroy_") for n in names)

        # the dashboard: locked without the token, open with it
        assert (await get(http, f"{base}/"))[0] == 401
        status, html = await get(http, f"{base}/", headers={"Authorization": f"Bearer {TOKEN}"})
        assert status == 200 and "<svg" in html

        # an outage: the fake drops the gateway and refuses reconnects; readiness turns 503 within a minute
        await server.drop_gateway()
        started = time.monotonic()

        async def unhealthy():
            status, body = await get(http, f"{base}/healthz")
            return status == 503 and "gateway" in body

        await wait_for(unhealthy, 60, "503 after the gateway dropped")
        print(f"503 after the drop in {time.monotonic() - started:.1f}s")
        server.gateway_down = False


def stored_message_ids(db: Path) -> set[int]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {r[0] for r in con.execute("SELECT message_id FROM posts WHERE message_id IS NOT NULL")}
    except sqlite3.OperationalError as exc:  # polled while the bot creates the file and migrates it: none yet
        if "no such table" not in str(exc):
            raise
        return set()
    finally:
        con.close()


def votes_in(db: Path) -> int:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute("SELECT COUNT(*) FROM votes").fetchone()[0]
    finally:
        con.close()


async def kilroy(env_file: Path, *args: str) -> tuple[int, str]:
    """A one-shot `kilroy` command (backup, restore) on the same settings; returns (exit status, output)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KILROY_")}
    env["PYTHONPATH"] = str(ROOT)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "--env-file", str(env_file), *args,
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    return proc.returncode, out.decode(errors="replace")


async def test_backup_while_running_then_restore_over_a_corrupt_db(server, tiny_model_dir, tmp_path):
    """Backup while the bot posts; restore refuses while it runs; after it stops, restore over a corrupted db."""
    env_file = write_env(
        tmp_path, tiny_model_dir, free_port(), KILROY_POST_CHANNEL_IDS=str(fd.CHANNEL_ID),
        KILROY_POST_INTERVAL_MINUTES="1",
    )  # fmt: skip
    db = tmp_path / "data" / "kilroy.db"
    async with kilroy_run(env_file, server):
        await wait_for(lambda: _async(db.exists() and len(stored_message_ids(db)) >= 1), 120, "a stored post")
        acknowledged = stored_message_ids(db)
        status, out = await kilroy(env_file, "backup", str(tmp_path / "backup"))
        assert status == 0, out
        await server.react(next(iter(acknowledged)), fd.MEMBER_ID, "❤️")  # the bot keeps writing after the backup
        await wait_for(lambda: _async(votes_in(db) == 1), 30, "a vote stored after the backup")
        status, out = await kilroy(env_file, "restore", str(tmp_path / "backup"))
        assert status == 2 and "bot is running" in out, out
    db.write_bytes(b"corrupted" * 4096)
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)  # noqa: ASYNC240 - a test, the bot is stopped
    status, out = await kilroy(env_file, "restore", str(tmp_path / "backup"))
    assert status == 0, out
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    assert acknowledged <= stored_message_ids(db)
    assert list((tmp_path / "data").glob("kilroy.db.replaced-*"))


async def _async(value):
    return value
