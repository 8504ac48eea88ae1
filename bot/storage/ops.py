"""Operations: the health write check, and the figures behind /metrics and the dashboard.

Reads that grow with the history (a year of posts for the dashboard) run on a private read-only sqlite3
connection in a worker thread, so they hold neither the event loop nor the shared connection that gateway events
write through. WAL lets that reader see the last committed state while the bot keeps writing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from bot.domain.scoring import ScoreFormula
from bot.storage._db import StorageBase
from bot.storage.scores import scored_cte

T = TypeVar("T")


@dataclass(frozen=True)
class Counters:
    """Running totals for /metrics, read in one pass."""

    posts: dict[tuple[int, str, str], int]  # (channel, adapter, kind) -> posts
    reaction_events: dict[str, int]  # action ('add' | 'remove') -> human events
    replies: int
    votes: int
    last_run: dict[str, Any] | None  # the newest finished training run: status, seconds, accepted


@dataclass(frozen=True)
class ScoredPost:
    """A post as the dashboard shows it: no token ids, no member ids, only counts."""

    id: int
    created_at: float
    channel_id: int
    guild_id: int | None
    message_id: int | None
    adapter: str
    kind: str
    text: str
    score: float
    voters: int
    repliers: int
    arm: str | None


class OpsMixin(StorageBase):
    """Health, metrics and dashboard reads."""

    _db_file: Path | None = None

    # --- health ------------------------------------------------------------------------------------------------------

    async def write_check(self, *, at: float) -> None:
        """Prove the database takes a write: one row updated inside a real write transaction."""
        async with self.transaction() as db:
            await db.execute(
                "INSERT INTO ops_heartbeat (id, at) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET at = ?", (at, at)
            )

    async def database_file(self) -> Path | None:
        """The main database file (None for an in-memory database)."""
        if self._db_file is None:
            async with self.db.execute("PRAGMA database_list") as cur:
                rows = await cur.fetchall()
            main = next((r[2] for r in rows if r[1] == "main"), "")
            self._db_file = Path(main) if main else None
        return self._db_file

    async def database_bytes(self) -> int:
        """Size on disk of the database with its WAL."""
        path = await self.database_file()
        if path is None:
            return 0
        return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` on a private read-only connection in a thread (or on the shared one for :memory:)."""
        path = await self.database_file()
        if path is None:
            raise RuntimeError("dashboard reads need a database file")

        def work() -> T:
            con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
            try:
                return fn(con)
            finally:
                con.close()

        return await asyncio.to_thread(work)

    # --- metrics -----------------------------------------------------------------------------------------------------

    async def counters(self) -> Counters:
        """Totals for /metrics (a few indexed aggregates, in a thread)."""

        def read(con: sqlite3.Connection) -> Counters:
            posts = {
                (int(c), str(a), str(k)): int(n)
                for c, a, k, n in con.execute(
                    "SELECT channel_id, adapter, kind, COUNT(*) FROM posts GROUP BY channel_id, adapter, kind"
                )
            }
            events = {
                str(a): int(n)
                for a, n in con.execute("SELECT action, COUNT(*) FROM reaction_events WHERE is_bot = 0 GROUP BY action")
            }
            replies = int(con.execute("SELECT COUNT(*) FROM replies").fetchone()[0])
            votes = int(con.execute("SELECT COUNT(*) FROM votes").fetchone()[0])
            row = con.execute(
                "SELECT status, started_at, finished_at, accepted, reason FROM training_runs "
                "WHERE finished_at IS NOT NULL ORDER BY id DESC LIMIT 1"
            ).fetchone()
            last = None
            if row is not None:
                last = {
                    "status": row[0],
                    "seconds": float(row[2]) - float(row[1]),
                    "accepted": None if row[3] is None else bool(row[3]),
                    "reason": row[4],
                    "finished_at": float(row[2]),
                }
            return Counters(posts, events, replies, votes, last)

        return await self._read(read)

    # --- dashboard ---------------------------------------------------------------------------------------------------

    async def scored_posts(
        self,
        formula: ScoreFormula,
        *,
        since: float = 0.0,
        channel_id: int | None = None,
        adapter: str | None = None,
        order: str = "recent",
        limit: int | None = 50,
    ) -> list[ScoredPost]:
        """Posts with their score (the real formula: unique members, mean emoji weight, one reply each)."""

        return await self._read(
            lambda con: _scored(
                con, formula, since=since, channel_id=channel_id, adapter=adapter, order=order, limit=limit
            )
        )

    async def adapter_history(self) -> list[dict[str, Any]]:
        """The adapter each training run wrote, newest first, with the gate's verdict (accepted, message) and
        the promotion stage it reached (promoted, trial, kept, refused)."""

        def read(con: sqlite3.Connection) -> list[dict[str, Any]]:
            cur = con.execute(
                "SELECT adapter AS name, id AS run_id, finished_at, accepted, stage, message, reason, community "
                "FROM training_runs WHERE adapter IS NOT NULL ORDER BY id DESC"
            )
            cols = [c[0] for c in cur.description]
            return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]

        return await self._read(read)

    async def stories_with_lines(self, limit: int = 20) -> list[dict[str, Any]]:
        """The latest stories with their transcripts (speakers, not members)."""

        def read(con: sqlite3.Connection) -> list[dict[str, Any]]:
            stories = con.execute(
                "SELECT id, channel_id, opening, started_at, ended_at FROM stories ORDER BY started_at DESC LIMIT ?",
                (limit,),
            ).fetchall()
            out = []
            for sid, ch, opening, started, ended in stories:
                lines = con.execute(
                    "SELECT seq, speaker, text, at FROM story_lines WHERE story_id = ? ORDER BY seq", (sid,)
                ).fetchall()
                out.append(
                    {
                        "id": sid,
                        "channel_id": ch,
                        "opening": opening,
                        "started_at": started,
                        "ended_at": ended,
                        "lines": [{"seq": s, "speaker": sp, "text": t, "at": a} for s, sp, t, a in lines],
                    }
                )
            return out

        return await self._read(read)


def _filters(since: float, channel_id: int | None, adapter: str | None) -> tuple[str, list[Any]]:
    where, args = ["p.created_at >= ?"], [since]
    if channel_id is not None:
        where.append("p.channel_id = ?")
        args.append(channel_id)
    if adapter:
        where.append("p.adapter = ?")
        args.append(adapter)
    return " AND ".join(where), args


def _scored(
    con: sqlite3.Connection,
    formula: ScoreFormula,
    *,
    since: float = 0.0,
    channel_id: int | None = None,
    adapter: str | None = None,
    order: str = "recent",
    limit: int | None = None,
) -> list[ScoredPost]:
    """Score the posts matching the filters in SQL; member ids never leave the database, only counts do."""
    cte, args = scored_cte(formula, *_filters(since, channel_id, adapter))
    order_by = "score DESC, id" if order == "top" else "created_at DESC, id DESC"
    sql = (
        f"{cte} SELECT id, created_at, channel_id, guild_id, message_id, adapter, kind, text, arm, score, voters, "
        f"repliers FROM scored ORDER BY {order_by}" + ("" if limit is None else f" LIMIT {int(limit)}")
    )
    rows = con.execute(sql, args).fetchall()
    return [
        ScoredPost(int(pid), float(at), int(ch), guild, message, str(ad), str(kind), str(text), float(score),
                   int(voters), int(repliers), arm)
        for pid, at, ch, guild, message, ad, kind, text, arm, score, voters, repliers in rows
    ]  # fmt: skip


def day_of(ts: float) -> str:
    """The UTC day of a timestamp, YYYY-MM-DD."""
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).strftime("%Y-%m-%d")
