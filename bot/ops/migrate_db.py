"""`kilroy migrate-db --to postgresql://...`: copy a SQLite install into PostgreSQL, then prove the copy.

1. The SQLite database is opened through Storage (so it is at the latest schema) and the PostgreSQL database too
   (its own migrations create the same tables). The bot must be stopped: its run lock is checked.
2. The target must be empty. A target that already holds exactly the source's rows (a migration that finished
   before) is reported as done and left alone; any other non-empty target is refused, naming its tables.
3. Every table is copied in one PostgreSQL transaction (all or nothing), in foreign-key order, with COPY in
   batches; the privacy key is copied too (the opt-out hashes are keyed by it), replacing the one the fresh
   PostgreSQL database drew. Identity sequences then continue after the copied ids.
4. Verified: every table's row count, and its first and last rows in primary-key order, equal on both sides.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.config.env import hide_password
from bot.storage import Storage
from bot.storage._conn import PostgresConnection

BATCH = 5000  # rows a COPY
SAMPLE = 100  # rows compared at each end of every table
# parents before children (foreign keys), then the tables nothing references
ORDER = ("training_runs", "trials", "posts", "votes", "reaction_events", "replies", "stories", "story_lines",
         "post_candidates", "audit_log", "opt_outs", "privacy_key", "ops_heartbeat")  # fmt: skip
REPLACED = ("privacy_key",)  # rows a fresh database has of its own: replaced by the source's


_BYTE_ORDER = ' COLLATE "C"'


class MigrateError(Exception):
    """The copy cannot start or did not verify; the message says why and what to do."""


@dataclass
class MigrateResult:
    counts: dict[str, int]
    seconds: float
    already: bool = False  # the target already held the copy: nothing was written
    notes: list[str] = field(default_factory=list)


def _tables(con: sqlite3.Connection) -> list[str]:
    names = [
        r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
    ]
    known = [t for t in ORDER if t in names]
    return known + sorted(t for t in names if t not in known)  # a table added later: copied after the known ones


def _columns(con: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in con.execute(f"PRAGMA table_info({table})").fetchall()]


async def _counts_pg(pg: PostgresConnection, tables: list[str]) -> dict[str, int]:
    return {t: int((await pg.execute_fetchall(f"SELECT COUNT(*) FROM {t}"))[0][0]) for t in tables}


def migrate(source: Path, target: str, *, progress: Callable[[str], None] | None = None) -> MigrateResult:
    """Copy the SQLite database `source` into the PostgreSQL database at `target`; see the module docstring."""
    if not Path(source).is_file():
        raise MigrateError(f"no SQLite database at {source} (check KILROY_DB_PATH, or pass --from PATH)")
    return asyncio.run(migrate_db(source, target, progress=progress))


async def migrate_db(source: Path, target: str, *, progress: Callable[[str], None] | None = None) -> MigrateResult:
    """`migrate`, on a running loop (the source file exists)."""
    say = progress or (lambda _msg: None)
    started = time.perf_counter()
    shown = hide_password(target)
    async with Storage.open(source):  # at the latest schema, as the bot would open it
        pass
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        result = [r[0] for r in src.execute("PRAGMA integrity_check")]
        if result != ["ok"]:
            raise MigrateError(f"{source} fails integrity_check ({'; '.join(result[:3])}); repair or restore it first")
        tables = _tables(src)
        counts = {t: int(src.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]) for t in tables}
        try:
            async with Storage.open(target) as storage:
                return await _into(src, storage.db, tables, counts, shown, say, started)
        except ConnectionError as exc:  # names the server, never the password
            raise MigrateError(str(exc)) from exc
    finally:
        src.close()


async def _into(
    src: sqlite3.Connection,
    pg: Any,
    tables: list[str],
    counts: dict[str, int],
    shown: str,
    say: Callable[[str], None],
    started: float,
) -> MigrateResult:
    """Steps 2-4 on the open target."""
    if not isinstance(pg, PostgresConnection):
        raise MigrateError(f"{shown} is not a PostgreSQL URL (postgresql://USER:PASSWORD@HOST:5432/DBNAME)")
    have = {
        r[0]
        for r in await pg.execute_fetchall(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )
    }
    missing = [t for t in tables if t not in have]
    if missing:
        raise MigrateError(
            f"{shown} lacks the tables {', '.join(missing)}: the SQLite database is newer than this "
            "Kilroy's PostgreSQL migrations (port the missing migration to bot/storage/migrations/postgresql)"
        )
    before = await _counts_pg(pg, tables)
    filled = {t: n for t, n in before.items() if n and t not in REPLACED}
    if filled:
        if before == counts and await _same_samples(src, pg, tables):
            say(f"{shown} already holds this database's rows (every count and sample matches): nothing to do")
            return MigrateResult(counts, time.perf_counter() - started, already=True)
        raise MigrateError(
            f"{shown} is not empty ({', '.join(f'{t}: {n} rows' for t, n in filled.items())}); "
            "migrate into a new, empty database (createdb), or drop this one's tables first"
        )
    await _copy(src, pg, tables, say)
    after = await _counts_pg(pg, tables)
    wrong = {t: (counts[t], after[t]) for t in tables if counts[t] != after[t]}
    if wrong:
        raise MigrateError(
            "the copy does not verify: "
            + ", ".join(f"{t}: {a} rows in SQLite, {b} in PostgreSQL" for t, (a, b) in wrong.items())
        )
    if not await _same_samples(src, pg, tables):
        raise MigrateError("the copy does not verify: sampled rows differ between SQLite and PostgreSQL")
    return MigrateResult(counts, time.perf_counter() - started)


async def _copy(src: sqlite3.Connection, pg: PostgresConnection, tables: list[str], say: Callable[[str], None]) -> None:
    """Every table in one transaction; identity sequences moved past the copied ids."""
    raw = pg.raw
    async with raw.transaction():
        for table in REPLACED:
            if table in tables:
                await raw.execute(f"DELETE FROM {table}")
        for table in tables:
            columns = _columns(src, table)
            cur = src.execute(f"SELECT {', '.join(columns)} FROM {table}")
            copied = 0
            while rows := cur.fetchmany(BATCH):
                await raw.copy_records_to_table(table, records=rows, columns=columns)
                copied += len(rows)
            say(f"{table}: {copied} rows")
        identities = await raw.fetch(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND is_identity = 'YES'"
        )
        for row in identities:
            table, column = row["table_name"], row["column_name"]
            await raw.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
                f"COALESCE((SELECT MAX({column}) FROM {table}), 0) + 1, false)"
            )


async def _same_samples(src: sqlite3.Connection, pg: PostgresConnection, tables: list[str]) -> bool:
    """The first and last SAMPLE rows of every table, in primary-key order, are equal on both sides (text keys in
    byte order on both: SQLite's BINARY, PostgreSQL's "C")."""
    for table in tables:
        info = src.execute(f"PRAGMA table_info({table})").fetchall()
        columns = [r[1] for r in info]
        keys = [r for r in sorted((r for r in info if r[5]), key=lambda r: r[5])] or info
        for direction in ("ASC", "DESC"):
            lite = ", ".join(f"{r[1]} {direction}" for r in keys)
            post = ", ".join(f"{r[1]}{_BYTE_ORDER if 'TEXT' in str(r[2]).upper() else ''} {direction}" for r in keys)
            select = f"SELECT {', '.join(columns)} FROM {table} ORDER BY "
            a = [tuple(_norm(v) for v in r) for r in src.execute(f"{select}{lite} LIMIT {SAMPLE}").fetchall()]
            b = [tuple(_norm(v) for v in r) for r in await pg.execute_fetchall(f"{select}{post} LIMIT {SAMPLE}")]
            if a != b:
                return False
    return True


def _norm(value: Any) -> Any:
    """SQLite keeps a REAL column's whole numbers as floats and PostgreSQL a BIGINT as int: compare as numbers."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else value
