"""A real PostgreSQL server for the tests: one per test session, a fresh database per test.

The server runs from the installed binaries (Debian's `postgresql` package: /usr/lib/postgresql/<v>/bin, or
`KILROY_TEST_PG_BIN`), in a temporary folder (in /dev/shm when there is one), listening on a unix socket only,
with durability off (fsync, synchronous_commit, full_page_writes: a test database needs none of it). initdb and
postgres refuse to run as root: as root, the server runs as the `postgres` system user (created if missing).

Each test gets `CREATE DATABASE ... TEMPLATE kilroy_template`, a copy of a database migrated once per session, so a
test pays a file copy (a few ms), not the migrations. A test that needs an unmigrated database asks for
`template0` (`new_database(migrated=False)`).

Fixtures (tests/conftest.py): `postgres_server` (this server, session-wide), `postgres_database` (a fresh migrated
database's URL), `database` / `bare_database` (parametrized: a SQLite path, then a PostgreSQL URL: a test taking
one runs on both backends), `any_storage` (a Storage on each backend; tests/storage and tests/privacy make it their
`storage`).

If the server cannot start, the tests that need it fail with the reason; they never skip (`.ci/run` installs the
package first). `KILROY_TEST_DATABASE_URL` points the tests at an existing server instead (a superuser URL; each
test's database is created on it).
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

T = TypeVar("T")

TEMPLATE = "kilroy_template"
INSTALL_HINT = (
    "the PostgreSQL tests need a PostgreSQL server: install Debian's package (apt-get install postgresql), "
    "set KILROY_TEST_PG_BIN to the folder holding initdb and pg_ctl, or KILROY_TEST_DATABASE_URL to a server"
)


class PostgresUnavailable(RuntimeError):
    """The test server could not be started; the message says why and what to install."""


def find_bindir() -> Path:
    """The folder with initdb, pg_ctl and postgres."""
    candidates = []
    if os.environ.get("KILROY_TEST_PG_BIN"):
        candidates.append(os.environ["KILROY_TEST_PG_BIN"])
    if shutil.which("pg_config"):
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            candidates.append(
                subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True).stdout.strip()
            )
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True)
    if shutil.which("initdb"):
        candidates.append(str(Path(shutil.which("initdb") or "").parent))
    for c in candidates:
        if (Path(c) / "initdb").exists() and (Path(c) / "pg_ctl").exists():
            return Path(c)
    raise PostgresUnavailable(f"no initdb/pg_ctl found; {INSTALL_HINT}")


def _server_user() -> pwd.struct_passwd | None:
    """Who runs the server: None (ourselves) unless we are root, then the `postgres` user, created if missing."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "postgres"],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam("postgres")


class _Loop:
    """An event loop on its own thread: fixtures create databases from sync code and from inside test loops."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="kilroy-test-postgres", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class PostgresServer:
    """A throwaway PostgreSQL server (or an existing one named by KILROY_TEST_DATABASE_URL)."""

    def __init__(self) -> None:
        self.root: Path | None = None
        self.bindir: Path | None = None
        self.base_url = ""
        self._names = itertools.count(1)
        self._prefix = f"kilroy_test_{os.getpid()}_"
        self._loop = _Loop()
        self._admin: Any = None
        self.owned = False

    # --- lifecycle ---------------------------------------------------------------------------------------------------

    def start(self) -> PostgresServer:
        external = os.environ.get("KILROY_TEST_DATABASE_URL")
        if external:
            self.base_url = external
        else:
            self._start_own()
        try:
            self._admin = self._loop.run(asyncpg.connect(self.url("postgres"), timeout=30))
            self._make_template()
        except Exception as exc:
            self.stop()
            raise PostgresUnavailable(f"PostgreSQL started but could not be used: {exc}") from exc
        return self

    def _start_own(self) -> None:
        self.bindir = find_bindir()
        user = _server_user()
        # in memory where there is a tmpfs: each test's database is a copy of the template's ~8 MB of files
        # (a container's /dev/shm is often 64 MB: too small, so the disk then)
        shm = Path("/dev/shm")
        roomy = shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 1 << 30
        tmp = str(shm) if roomy else None
        self.root = Path(tempfile.mkdtemp(prefix="kilroy-pg-", dir=tmp))
        data, sock = self.root / "data", self.root / "sock"
        sock.mkdir()
        if user is not None:
            for p in (self.root, sock):
                os.chown(p, user.pw_uid, user.pw_gid)
        self.owned = True
        as_user: dict[str, Any] = (
            {} if user is None else {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        )
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        if user is not None:
            env["HOME"] = str(self.root)
        try:
            subprocess.run(
                [self.bindir / "initdb", "-D", data, "-U", "kilroy", "--auth=trust", "-E", "UTF8", "--no-locale",
                 "--no-sync", "--no-instructions"],
                check=True, capture_output=True, text=True, env=env, cwd=self.root, **as_user,
            )  # fmt: skip
            options = (
                f"-k {sock} -c listen_addresses='' -p 5432 -c fsync=off -c synchronous_commit=off "
                "-c full_page_writes=off -c max_connections=200 -c shared_buffers=32MB "
                "-c wal_level=minimal -c max_wal_senders=0 -c max_wal_size=128MB"
            )
            subprocess.run(
                [self.bindir / "pg_ctl", "-D", data, "-l", self.root / "server.log", "-o", options, "-w", "-t", "60",
                 "start"],
                check=True, capture_output=True, text=True, env=env, cwd=self.root, **as_user,
            )  # fmt: skip
        except (OSError, subprocess.CalledProcessError) as exc:
            detail = getattr(exc, "stderr", "") or str(exc)
            log = self.root / "server.log"
            if log.exists():
                detail += "\n" + log.read_text(errors="replace")[-2000:]
            self.stop()
            raise PostgresUnavailable(f"PostgreSQL did not start ({self.bindir}): {detail.strip()}") from exc
        self.base_url = f"postgresql://kilroy@/postgres?host={sock}&port=5432"

    def stop(self) -> None:
        if self._admin is not None:
            with contextlib.suppress(Exception):
                self._loop.run(self._admin.close(), timeout=10)
            self._admin = None
        if self.owned and self.root is not None and self.bindir is not None:
            self._report_cpu()
            user = _server_user()
            as_user: dict[str, Any] = {} if user is None else {"user": user.pw_uid, "group": user.pw_gid}
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(
                    [self.bindir / "pg_ctl", "-D", self.root / "data", "-m", "immediate", "-w", "stop"],
                    capture_output=True, timeout=60, cwd=self.root, **as_user,
                )  # fmt: skip
            shutil.rmtree(self.root, ignore_errors=True)
            self.owned = False
        self._loop.close()

    def _report_cpu(self) -> None:
        """With KILROY_TEST_PG_CPU_FILE set, append the server's CPU seconds (postmaster and its reaped backends):
        what the session's PostgreSQL tests cost beyond the pytest process (`/usr/bin/time` cannot see it)."""
        out = os.environ.get("KILROY_TEST_PG_CPU_FILE")
        if not out or self.root is None:
            return
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int((self.root / "data" / "postmaster.pid").read_text().split()[0])
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks = sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
            with open(out, "a", encoding="utf-8") as f:
                f.write(f"{ticks / os.sysconf('SC_CLK_TCK'):.1f}\n")

    # --- databases ---------------------------------------------------------------------------------------------------

    def url(self, dbname: str) -> str:
        """The server's URL with another database name."""
        parts = urlsplit(self.base_url)
        return urlunsplit(parts._replace(path=f"/{dbname}"))

    def _make_template(self) -> None:
        from bot.storage import Storage

        async def make() -> None:
            await self._admin.execute(f"DROP DATABASE IF EXISTS {TEMPLATE}_{os.getpid()}")
            await self._admin.execute(f"CREATE DATABASE {TEMPLATE}_{os.getpid()} TEMPLATE template0")
            async with Storage.open(self.url(f"{TEMPLATE}_{os.getpid()}")):
                pass

        self._loop.run(make())

    def new_database(self, *, migrated: bool = True) -> str:
        """A new, empty database's URL: migrated (a copy of the session's template) or bare (template0)."""
        name = f"{self._prefix}{next(self._names)}"
        template = f"{TEMPLATE}_{os.getpid()}" if migrated else "template0"
        # FILE_COPY (PostgreSQL 15+): a copy of the template's files, faster than WAL-logging a small database
        strategy = " STRATEGY FILE_COPY" if self._admin.get_server_version().major >= 15 else ""
        self._loop.run(self._admin.execute(f"CREATE DATABASE {name} TEMPLATE {template}{strategy}"))
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop a test's database (its connections must be closed)."""
        name = urlsplit(url).path.lstrip("/")
        with contextlib.suppress(Exception):
            self._loop.run(self._admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def start_server() -> PostgresServer:
    """Start the session's server; PostgresUnavailable (with the fix) if it cannot start."""
    return PostgresServer().start()
