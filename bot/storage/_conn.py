"""The database connection every storage aggregate talks to, for two backends: SQLite (aiosqlite) and PostgreSQL
(asyncpg).

The mixins write one SQL text for both: `?` placeholders (turned into `$1, $2, ...` for PostgreSQL, outside string
literals), `ON CONFLICT ... DO NOTHING` (never SQLite's `INSERT OR IGNORE`), `INSERT ... RETURNING id` (never
`lastrowid`), integer flags (`= 0`/`= 1`), and a `CAST` wherever PostgreSQL could not infer a parameter's type.
What differs between the two is named in `Dialect` (`day`, `instr`) or lives in the backend classes (transactions,
schema version, migrations, the dashboard's reader).

`execute()` runs a statement and reads its whole result at once (every caller reads all of it), so a result holds no
cursor open on the connection: `rowcount`, `description`, `fetchone()`, `fetchall()`. Statements are serialised on
the connection (aiosqlite's one thread; a lock for asyncpg, which refuses a second operation while one runs), and a
statement that has started always completes, even if its caller is cancelled meanwhile (`_finish`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Generator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import aiosqlite

log = logging.getLogger("bot.storage")

T = TypeVar("T")

POSTGRES_SCHEMES = ("postgresql", "postgres")
_MIGRATION_LOCK = 0x4B494C52  # 'KILR': the advisory lock two processes migrating one PostgreSQL database take


async def _finish(aw: Awaitable[T]) -> T:
    """Await `aw` to completion even if the caller is cancelled meanwhile; re-raise the cancellation after."""
    task = asyncio.ensure_future(aw)
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if task.done():
                raise
            cancelled = True  # keep waiting: the statement runs on the connection regardless
    if cancelled:
        raise asyncio.CancelledError
    return result


def is_postgres_url(target: object) -> bool:
    """True for a `postgresql://` (or `postgres://`) URL."""
    return isinstance(target, str) and target.split("://", 1)[0].lower() in POSTGRES_SCHEMES and "://" in target


def redact_url(url: str) -> str:
    """The URL with its password replaced by `***`: what logs and error messages show."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    return urlunsplit(parts._replace(netloc=netloc[0].split(":", 1)[0] + ":***@" + netloc[1]))


@dataclass(frozen=True)
class Dialect:
    """The SQL that differs between the backends, by name."""

    name: str  # 'sqlite' or 'postgresql'

    @property
    def postgres(self) -> bool:
        return self.name == "postgresql"

    def day(self, column: str) -> str:
        """The UTC day (YYYY-MM-DD) of a unix-seconds column."""
        if self.postgres:
            return f"to_char(to_timestamp({column}) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
        return f"strftime('%Y-%m-%d', {column}, 'unixepoch')"

    def instr(self, haystack: str, needle: str) -> str:
        """1-based position of `needle` in `haystack`, 0 if absent."""
        return f"strpos({haystack}, {needle})" if self.postgres else f"instr({haystack}, {needle})"


SQLITE = Dialect("sqlite")
POSTGRES = Dialect("postgresql")

# errors either backend raises, for callers that must tell them apart from bugs
try:  # asyncpg is a dependency; the guard only keeps a SQLite-only install importable
    import asyncpg

    IntegrityError: tuple[type[BaseException], ...] = (
        sqlite3.IntegrityError,
        asyncpg.IntegrityConstraintViolationError,
    )
    DatabaseError: tuple[type[BaseException], ...] = (sqlite3.DatabaseError, asyncpg.PostgresError)
except ImportError:  # pragma: no cover
    asyncpg = None
    IntegrityError = (sqlite3.IntegrityError,)
    DatabaseError = (sqlite3.DatabaseError,)


class Result:
    """A statement's complete result: rows (tuples), column names, rows changed."""

    __slots__ = ("_rows", "description", "rowcount")

    def __init__(self, rows: list[tuple[Any, ...]], description: list[tuple[str]], rowcount: int) -> None:
        self._rows = rows
        self.description = description  # [(name,), ...] as DB-API puts it; empty when no row came back (PostgreSQL)
        self.rowcount = rowcount

    async def fetchone(self) -> tuple[Any, ...] | None:
        return self._rows[0] if self._rows else None

    async def fetchall(self) -> list[tuple[Any, ...]]:
        return self._rows


class _Pending:
    """What `execute` returns: awaited, or used as `async with db.execute(...) as result` (aiosqlite's two forms)."""

    __slots__ = ("_coro",)

    def __init__(self, coro: Awaitable[Result]) -> None:
        self._coro = coro

    def __await__(self) -> Generator[Any, None, Result]:
        return self._coro.__await__()

    async def __aenter__(self) -> Result:
        return await self._coro

    async def __aexit__(self, *exc: object) -> None:
        return None


class Connection:
    """One database connection, either backend; see the module docstring."""

    dialect: Dialect

    def execute(self, sql: str, args: Sequence[Any] = ()) -> _Pending:
        """Run one statement; the result holds every row."""
        return _Pending(self._execute(sql, args))

    async def execute_fetchall(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return await (await self._execute(sql, args)).fetchall()

    async def _execute(self, sql: str, args: Sequence[Any]) -> Result:
        raise NotImplementedError

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement for each row of arguments."""
        raise NotImplementedError

    @property
    def in_transaction(self) -> bool:
        raise NotImplementedError

    async def begin(self) -> None:
        """Open a write transaction (SQLite: BEGIN IMMEDIATE, taking the file's write lock now)."""
        raise NotImplementedError

    async def commit(self) -> None:
        await self._execute("COMMIT", ())

    async def rollback(self) -> None:
        await self._execute("ROLLBACK", ())

    async def schema_version(self) -> int:
        raise NotImplementedError

    async def apply_migrations(self, scripts: list[tuple[int, str]]) -> int:
        """Apply the scripts numbered above the current version, each in one transaction; the new version."""
        raise NotImplementedError

    def reader(self) -> Any:
        """`async with db.reader() as r`: a second connection for long reads (the dashboard), off this one."""
        raise NotImplementedError

    async def database_bytes(self) -> int:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


# --- SQLite --------------------------------------------------------------------------------------------------------


class SqliteConnection(Connection):
    """aiosqlite: every statement runs on the connection's thread, in one hop (execute, read, close)."""

    dialect = SQLITE

    def __init__(self, db: aiosqlite.Connection, path: Path | None) -> None:
        self.raw = db  # the aiosqlite connection, for SQLite-only code (PRAGMAs, tests' trace callbacks)
        self.path = path  # None for ':memory:'

    @classmethod
    async def connect(cls, path: Path | str, *, read_only: bool = False) -> SqliteConnection:
        if read_only:
            db = await aiosqlite.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, timeout=5)
            return cls(db, Path(path))
        db = await aiosqlite.connect(str(path), isolation_level=None)
        try:
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA foreign_keys=ON")
            await db.execute("PRAGMA synchronous=NORMAL")
            # a writer in another process (the training worker, niced below the bot) may hold the write lock for a
            # few seconds on a busy machine: wait for it rather than drop a reaction (5 s lost events under load)
            await db.execute("PRAGMA busy_timeout=60000")
            # deleted rows are overwritten with zeros, not left readable in free pages until the next VACUUM
            await db.execute("PRAGMA secure_delete=ON")
        except BaseException:
            await db.close()
            raise
        return cls(db, None if str(path) == ":memory:" else Path(path))

    async def _execute(self, sql: str, args: Sequence[Any]) -> Result:
        def run(con: sqlite3.Connection) -> Result:
            cur = con.execute(sql, args)
            try:
                rows = cur.fetchall()
                description = [(d[0],) for d in cur.description or ()]
                return Result(rows, description, cur.rowcount)
            finally:
                cur.close()

        # aiosqlite's queue onto its thread: one hop where execute + fetch + close would take three
        return await self.raw._execute(run, self.raw._conn)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self.raw.executemany(sql, rows)

    @property
    def in_transaction(self) -> bool:
        return self.raw.in_transaction

    async def begin(self) -> None:
        await self.raw.execute("BEGIN IMMEDIATE")

    async def schema_version(self) -> int:
        async with self.raw.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def apply_migrations(self, scripts: list[tuple[int, str]]) -> int:
        version = await self.schema_version()
        for number, sql in scripts:
            if number <= version:
                continue
            log.info("applying migration %04d", number)
            # executescript commits first; wrap it in an explicit transaction so a failure leaves no half schema
            await self.raw.executescript(f"BEGIN;\n{sql}\nPRAGMA user_version = {number};\nCOMMIT;")
            version = number
        return version

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[Connection]:
        """A private read-only connection on its own thread: WAL lets it read the last commit while we write."""
        if self.path is None:
            raise RuntimeError("dashboard reads need a database file")
        con = await SqliteConnection.connect(self.path, read_only=True)
        try:
            yield con
        finally:
            await con.close()

    async def database_bytes(self) -> int:
        if self.path is None:
            return 0
        return sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists())

    async def close(self) -> None:
        await self.raw.close()


# --- PostgreSQL ----------------------------------------------------------------------------------------------------

_RETURNS_ROWS = re.compile(r"^\s*(SELECT|WITH|VALUES|SHOW|EXPLAIN|TABLE)\b|\bRETURNING\b", re.IGNORECASE)


@functools.lru_cache(maxsize=2048)
def to_postgres(sql: str) -> str:
    """`?` placeholders as `$1, $2, ...`; a `?` inside a string literal, quoted name or comment stays."""
    out: list[str] = []
    n = 0
    i = 0
    while i < len(sql):
        c = sql[i]
        if c in "'\"":
            end = sql.find(c, i + 1)
            while end != -1 and sql[end + 1 : end + 2] == c:  # a doubled quote inside the literal
                end = sql.find(c, end + 2)
            end = len(sql) if end == -1 else end + 1
            out.append(sql[i:end])
            i = end
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            end = len(sql) if end == -1 else end
            out.append(sql[i:end])
            i = end
        elif c == "?":
            n += 1
            out.append(f"${n}")
            i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _rowcount(status: str) -> int:
    """Rows changed, from a command tag: 'INSERT 0 1', 'UPDATE 3', 'DELETE 0'."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else -1


class PostgresConnection(Connection):
    """asyncpg: one connection, one statement at a time (a lock), each one run to completion."""

    dialect = POSTGRES

    def __init__(self, conn: Any, url: str) -> None:
        self.raw = conn  # the asyncpg connection
        self.url = url
        self._lock = asyncio.Lock()
        self._reader: PostgresConnection | None = None
        self._reader_lock = asyncio.Lock()

    @classmethod
    async def connect(cls, url: str) -> PostgresConnection:
        if asyncpg is None:  # pragma: no cover
            raise RuntimeError(
                "KILROY_DATABASE_URL names PostgreSQL, but asyncpg is not installed (pip install asyncpg)"
            )
        try:
            conn = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1), timeout=30)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            # the message names the server, never the password
            raise ConnectionError(f"cannot connect to PostgreSQL at {redact_url(url)}: {exc}") from exc
        await conn.execute("SET TIME ZONE 'UTC'")
        return cls(conn, url)

    async def _run(self, aw: Awaitable[T]) -> T:
        async with self._lock:
            return await _finish(aw)

    async def _execute(self, sql: str, args: Sequence[Any]) -> Result:
        query = to_postgres(sql)
        if _RETURNS_ROWS.search(sql):
            records = await self._run(self.raw.fetch(query, *args))
            description = [(k,) for k in records[0].keys()] if records else []  # noqa: SIM118 (a Record)
            return Result([tuple(r) for r in records], description, len(records))
        status = await self._run(self.raw.execute(query, *args))
        return Result([], [], _rowcount(status))

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = list(rows)
        if rows:
            await self._run(self.raw.executemany(to_postgres(sql), rows))

    @property
    def in_transaction(self) -> bool:
        return bool(self.raw.is_in_transaction())

    async def begin(self) -> None:
        await self._execute("BEGIN", ())

    async def schema_version(self) -> int:
        await self._run(
            self.raw.execute(
                "CREATE TABLE IF NOT EXISTS kilroy_schema "
                "(id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)"
            )
        )
        version = await self._run(self.raw.fetchval("SELECT version FROM kilroy_schema WHERE id = 1"))
        return int(version or 0)

    async def apply_migrations(self, scripts: list[tuple[int, str]]) -> int:
        # two processes starting at once (two shards) migrate one after the other: the second finds nothing to do
        await self._run(self.raw.execute(f"SELECT pg_advisory_lock({_MIGRATION_LOCK})"))
        try:
            version = await self.schema_version()
            for number, sql in scripts:
                if number <= version:
                    continue
                log.info("applying migration %04d (postgresql)", number)

                async def apply(number: int = number, sql: str = sql) -> None:
                    async with self.raw.transaction():  # PostgreSQL's DDL is transactional: all or nothing
                        await self.raw.execute(sql)  # no arguments: the simple protocol, several statements
                        await self.raw.execute(
                            "INSERT INTO kilroy_schema (id, version) VALUES (1, $1) "
                            "ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version",
                            number,
                        )

                await self._run(apply())
                version = number
            return version
        finally:
            await self._run(self.raw.execute(f"SELECT pg_advisory_unlock({_MIGRATION_LOCK})"))

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[Connection]:
        """A second connection, opened on first use and kept: MVCC lets it read while this one writes."""
        async with self._reader_lock:
            if self._reader is None:
                self._reader = await PostgresConnection.connect(self.url)
            yield self._reader

    async def database_bytes(self) -> int:
        return int(await self._run(self.raw.fetchval("SELECT pg_database_size(current_database())")))

    async def close(self) -> None:
        try:
            if self._reader is not None:
                await self._reader.close()
        finally:
            await self.raw.close()


async def connect(target: Path | str) -> Connection:
    """A connection to `target`: a `postgresql://` URL, or a SQLite file path (or ':memory:')."""
    if is_postgres_url(target):
        return await PostgresConnection.connect(str(target))
    return await SqliteConnection.connect(target)
