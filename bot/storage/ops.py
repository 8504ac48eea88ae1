"""Operations: the health write check, and the figures behind /metrics and the dashboard.

Reads that grow with the history (a year of posts for the dashboard) run on a second connection (SQLite: a private
read-only one on its own thread; PostgreSQL: a second session), so they hold neither the event loop nor the shared
connection that gateway events write through. WAL (SQLite) or MVCC (PostgreSQL) lets that reader see the last
committed state while the bot keeps writing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from bot.domain.scoring import ScoreFormula
from bot.storage._conn import Connection
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

    # --- health ------------------------------------------------------------------------------------------------------

    async def write_check(self, *, at: float) -> None:
        """Prove the database takes a write: one row updated inside a real write transaction."""
        async with self.transaction() as db:
            await db.execute(
                "INSERT INTO ops_heartbeat (id, at) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET at = ?", (at, at)
            )

    async def database_file(self) -> Path | None:
        """The main database file (None for an in-memory database, or PostgreSQL)."""
        return getattr(self.db, "path", None)

    async def database_bytes(self) -> int:
        """Size on disk of the database (SQLite: the file with its WAL; PostgreSQL: pg_database_size)."""
        return await self.db.database_bytes()

    async def _read(self, fn: Callable[[Connection], Awaitable[T]]) -> T:
        """Run `fn` on a second connection (`Connection.reader`): off the shared one gateway events write through."""
        async with self.db.reader() as con:
            return await fn(con)

    # --- metrics -----------------------------------------------------------------------------------------------------

    async def counters(self) -> Counters:
        """Totals for /metrics (a few indexed aggregates, on the reader)."""

        async def read(con: Connection) -> Counters:
            posts = {
                (int(c), str(a), str(k)): int(n)
                for c, a, k, n in await con.execute_fetchall(
                    "SELECT channel_id, adapter, kind, COUNT(*) FROM posts GROUP BY channel_id, adapter, kind"
                )
            }
            events = {
                str(a): int(n)
                for a, n in await con.execute_fetchall(
                    "SELECT action, COUNT(*) FROM reaction_events WHERE is_bot = 0 GROUP BY action"
                )
            }
            replies = int((await con.execute_fetchall("SELECT COUNT(*) FROM replies"))[0][0])
            votes = int((await con.execute_fetchall("SELECT COUNT(*) FROM votes"))[0][0])
            rows = await con.execute_fetchall(
                "SELECT status, started_at, finished_at, accepted, reason FROM training_runs "
                "WHERE finished_at IS NOT NULL ORDER BY id DESC LIMIT 1"
            )
            last = None
            if rows:
                row = rows[0]
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

        async def read(con: Connection) -> list[dict[str, Any]]:
            cols = ("name", "run_id", "finished_at", "accepted", "stage", "message", "reason", "community")
            rows = await con.execute_fetchall(
                "SELECT adapter AS name, id AS run_id, finished_at, accepted, stage, message, reason, community "
                "FROM training_runs WHERE adapter IS NOT NULL ORDER BY id DESC"
            )
            return [dict(zip(cols, row, strict=True)) for row in rows]

        return await self._read(read)

    async def stories_with_lines(self, limit: int = 20) -> list[dict[str, Any]]:
        """The latest stories with their transcripts (speakers, not members)."""

        async def read(con: Connection) -> list[dict[str, Any]]:
            stories = await con.execute_fetchall(
                "SELECT id, channel_id, opening, started_at, ended_at FROM stories ORDER BY started_at DESC LIMIT ?",
                (limit,),
            )
            out = []
            for sid, ch, opening, started, ended in stories:
                lines = await con.execute_fetchall(
                    "SELECT seq, speaker, text, at FROM story_lines WHERE story_id = ? ORDER BY seq", (sid,)
                )
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


async def _scored(
    con: Connection,
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
    rows = await con.execute_fetchall(sql, args)
    return [
        ScoredPost(int(pid), float(at), int(ch), guild, message, str(ad), str(kind), str(text), float(score),
                   int(voters), int(repliers), arm)
        for pid, at, ch, guild, message, ad, kind, text, arm, score, voters, repliers in rows
    ]  # fmt: skip


def day_of(ts: float) -> str:
    """The UTC day of a timestamp, YYYY-MM-DD."""
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).strftime("%Y-%m-%d")
