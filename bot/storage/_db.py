"""The connection every storage aggregate shares: opening, migrations, and the one write-transaction helper.

One aiosqlite connection serves many coroutines (gateway events arrive concurrently), so every write goes through
one lock, and a multi-statement write goes through `transaction()`. BEGIN, COMMIT and ROLLBACK are protected from
cancellation: a task cancelled while one of them is queued on the connection's thread waits for it to finish and
undoes a half-open transaction before the lock is released. Without that, one cancelled write left the shared
connection inside a transaction, every later write failed, and acknowledged posts were lost on reopening.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Iterable
from contextlib import asynccontextmanager, suppress
from importlib import resources
from pathlib import Path
from typing import Any, Self, TypeVar

import aiosqlite

log = logging.getLogger("bot.storage")

T = TypeVar("T")


def migrations() -> list[tuple[int, str]]:
    """The numbered SQL migrations shipped in `bot/storage/migrations`, in order."""
    files = resources.files("bot.storage") / "migrations"
    found = []
    for entry in files.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text(encoding="utf-8")))
    return sorted(found)


def chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    """`items` in slices of at most `size` (SQLite limits bound parameters)."""
    for i in range(0, len(items), size):
        yield items[i : i + size]


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
            cancelled = True  # keep waiting: the statement runs on the connection's thread regardless
    if cancelled:
        raise asyncio.CancelledError
    return result


def create_private(path: Path) -> None:
    """Create the database file owner-only (0600; its -wal and -shm take the same mode), its folder 0700, unless
    they exist: SQLite alone creates 0644, readable by every local user. Existing files keep the operator's mode."""
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
    with suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


class StorageBase:
    """The shared connection, the write lock, the transaction helper, migrations."""

    def __init__(self, db: aiosqlite.Connection) -> None:
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
        """True for a member who asked to be forgotten: nothing of theirs is recorded. Writers call it again under
        the write lock, where `forget_member` also updates the set, so a check and its write see one state."""
        return self.member_hash(member_id) in self._opted_out_hashes

    async def _shutdown(self) -> None:
        """Finish background writes before the connection closes; aggregates that queue writes extend this."""

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """Serialised write transaction: BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any error or cancellation."""
        async with self._write:
            if self.db.in_transaction:  # belt and braces: never build on a transaction someone left open
                log.warning("storage: found the connection inside a transaction; rolling it back")
                await _finish(self.db.execute("ROLLBACK"))
            try:
                await _finish(self.db.execute("BEGIN IMMEDIATE"))
            except asyncio.CancelledError:
                if self.db.in_transaction:
                    await _finish(self.db.execute("ROLLBACK"))
                raise
            try:
                yield self.db
            except BaseException:
                await _finish(self.db.execute("ROLLBACK"))
                raise
            await _finish(self.db.execute("COMMIT"))

    @classmethod
    @asynccontextmanager
    async def open(cls, path: Path | str) -> AsyncIterator[Self]:
        """Open (creating if needed), migrate, and close on exit."""
        if str(path) != ":memory:":
            create_private(Path(path))
        db = await aiosqlite.connect(str(path), isolation_level=None)
        storage: Self | None = None
        try:
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA foreign_keys=ON")
            await db.execute("PRAGMA synchronous=NORMAL")
            # a writer in another process (the training worker, niced below the bot) may hold the write lock for a
            # few seconds on a busy machine: wait for it rather than drop a reaction (5 s lost events under load)
            await db.execute("PRAGMA busy_timeout=60000")
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
        """The applied migration number (PRAGMA user_version)."""
        async with self.db.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def migrate(self) -> int:
        """Apply pending numbered migrations, each in one transaction; return the new version."""
        version = await self.schema_version()
        for number, sql in migrations():
            if number <= version:
                continue
            log.info("applying migration %04d", number)
            # executescript commits first; wrap it in an explicit transaction so a failure leaves no half schema
            await self.db.executescript(f"BEGIN;\n{sql}\nPRAGMA user_version = {number};\nCOMMIT;")
            version = number
        return version
