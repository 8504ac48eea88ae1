"""The connection every storage aggregate shares: opening, migrations, and the one write-transaction helper.

One connection (`_conn.py`: aiosqlite for a SQLite file, asyncpg for a `postgresql://` URL) serves many coroutines
(gateway events arrive concurrently), so every write goes through one lock, and a multi-statement write goes through
`transaction()`. BEGIN, COMMIT and ROLLBACK are protected from cancellation: a task cancelled while one of them is
queued on the connection waits for it to finish and undoes a half-open transaction before the lock is released.
Without that, one cancelled write left the shared connection inside a transaction, every later write failed, and
acknowledged posts were lost on reopening. On PostgreSQL every statement is also run to completion (asyncpg would
otherwise cancel it on the server halfway and leave the connection busy), so both backends behave alike.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager, suppress
from importlib import resources
from pathlib import Path
from typing import Any, Self

from bot.storage._conn import Connection, Dialect, _finish, connect, is_postgres_url

__all__ = ["StorageBase", "_finish", "chunks", "create_private", "migrations"]

log = logging.getLogger("bot.storage")


def migrations(dialect: str = "sqlite") -> list[tuple[int, str]]:
    """The numbered SQL migrations of a dialect, in order: `bot/storage/migrations/*.sql` for SQLite,
    `bot/storage/migrations/postgresql/*.sql` for PostgreSQL (the same numbers and names, ported)."""
    files = resources.files("bot.storage") / "migrations"
    if dialect != "sqlite":
        files = files / dialect
    found = []
    for entry in files.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text(encoding="utf-8")))
    return sorted(found)


def chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    """`items` in slices of at most `size` (SQLite limits bound parameters)."""
    for i in range(0, len(items), size):
        yield items[i : i + size]


def create_private(path: Path) -> None:
    """Create the database file owner-only (0600; its -wal and -shm take the same mode), its folder 0700, unless
    they exist: SQLite alone creates 0644, readable by every local user. Existing files keep the operator's mode."""
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
    with suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


OPT_OUT_LOCK = 0x4B494C4F  # 'KILO': PostgreSQL's advisory lock between forgets and writes, across processes


class StorageBase:
    """The shared connection, the write lock, the transaction helper, migrations."""

    def __init__(self, db: Connection) -> None:
        self.db = db
        self._write = asyncio.Lock()
        self._privacy_key = b""  # random per database (table privacy_key), loaded by privacy.py after migrating
        self._opted_out_hashes: set[str] = set()  # mirrors the opt_outs table: live events check it without a query

    def member_hash(self, member_id: int) -> str:
        """The keyed hash that stands for a member in the opt-out table."""
        return hmac.new(self._privacy_key, str(int(member_id)).encode(), hashlib.sha256).hexdigest()

    def member_label(self, member_id: int) -> str:
        """How an operator or moderator is stored and shown where an id would be (trial decisions, the audit trail's
        'who'): a short keyed hash, the same everywhere, that names nobody outside this database."""
        digest = hmac.new(self._privacy_key, f"label:{int(member_id)}".encode(), hashlib.sha256).hexdigest()
        return f"member {digest[:12]}"

    def _opted_out(self, member_id: int) -> bool:
        """True for a member who asked to be forgotten: nothing of theirs is recorded. Writers call it again inside
        a write transaction, where `forget_member` also updates the set, so a check and its write see one state.

        On PostgreSQL other processes (shards) forget members too: every write transaction takes the opt-out lock
        shared and re-reads the set (`_opt_out_barrier`), and a forget takes it exclusively, so a write and a forget
        in any two processes are ordered, and the write sees the forget that came first."""
        return self.member_hash(member_id) in self._opted_out_hashes

    async def _shutdown(self) -> None:
        """Finish background writes before the connection closes; aggregates that queue writes extend this."""

    @property
    def dialect(self) -> Dialect:
        """The SQL that differs between SQLite and PostgreSQL (`bot/storage/_conn.py`)."""
        return self.db.dialect

    async def _opt_out_barrier(self, *, forgetting: bool) -> None:
        """PostgreSQL, inside a transaction: the cross-process opt-out lock (exclusive to forget, shared to write),
        then the opted-out set as committed now."""
        mode = "" if forgetting else "_shared"
        await self.db.execute(f"SELECT pg_advisory_xact_lock{mode}(?)", (OPT_OUT_LOCK,))
        rows = await self.db.execute_fetchall("SELECT member_hash FROM opt_outs")
        self._opted_out_hashes = {str(r[0]) for r in rows}

    @asynccontextmanager
    async def transaction(self, *, forgetting: bool = False) -> AsyncIterator[Connection]:
        """Serialised write transaction: BEGIN (IMMEDIATE on SQLite) ... COMMIT, or ROLLBACK on any error or
        cancellation. On PostgreSQL it also orders itself with the forgets of every process (`_opted_out`);
        `forgetting`: this transaction records an opt-out."""
        async with self._write:
            if self.db.in_transaction:  # belt and braces: never build on a transaction someone left open
                log.warning("storage: found the connection inside a transaction; rolling it back")
                await _finish(self.db.rollback())
            try:
                await _finish(self.db.begin())
            except asyncio.CancelledError:
                if self.db.in_transaction:
                    await _finish(self.db.rollback())
                raise
            try:
                if self.dialect.postgres:
                    await self._opt_out_barrier(forgetting=forgetting)
                yield self.db
            except BaseException:
                await _finish(self.db.rollback())
                raise
            await _finish(self.db.commit())

    @classmethod
    @asynccontextmanager
    async def open(cls, target: Path | str) -> AsyncIterator[Self]:
        """Open (creating if needed), migrate, and close on exit. `target`: a SQLite file path (or ':memory:'), or a
        `postgresql://` URL (KILROY_DATABASE_URL)."""
        if not is_postgres_url(target) and str(target) != ":memory:":
            create_private(Path(target))
        db = await connect(target)
        storage: Self | None = None
        try:
            storage = cls(db)
            await storage.migrate()
            yield storage
        finally:
            try:
                if storage is not None:
                    await storage._shutdown()  # queued reactions are written before the connection goes
            finally:
                await db.close()

    async def schema_version(self) -> int:
        """The applied migration number (SQLite: PRAGMA user_version; PostgreSQL: the kilroy_schema row)."""
        return await self.db.schema_version()

    async def migrate(self) -> int:
        """Apply pending numbered migrations of this backend's dialect, each in one transaction; the new version."""
        return await self.db.apply_migrations(migrations(self.dialect.name))
