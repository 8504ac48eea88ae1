"""Live reactions: `add_vote` and `remove_vote`, written in batches by one writer task (group commit).

Reactions come in bursts. Written one by one, each event took about seven round trips to aiosqlite's thread (look up
the post, BEGIN, INSERT, INSERT or DELETE, COMMIT): under 2,000 events a second the store kept up with ~1,200, the
listener tasks waiting on it piled up, and the garbage collector scanning them stalled the event loop for hundreds of
milliseconds. So a caller queues its event and waits; the writer takes everything queued (up to `BATCH` events) and
applies it in one transaction with a fixed number of statements: one lookup of the posts, one of the votes already
there, the events replayed in order in Python, the rows written with `executemany`. Each caller gets, after COMMIT,
the answer the one-by-one path would have given; if the batch fails, every caller in it gets the error.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from bot.storage._db import StorageBase, _finish, chunks

BATCH = 500  # events a transaction: keeps up with any burst we measured, and holds the write lock only briefly

STOPPED = "the vote writer stopped before this reaction was written"
Key = tuple[int, int, str]  # (post_id, member_id, emoji): one vote


@dataclass(slots=True)
class _Event:
    """A queued reaction event, and the future its caller awaits."""

    message_id: int
    member_id: int
    emoji: str
    action: str  # 'add' or 'remove', as reaction_events stores it; 'clear': every vote on the post (of `emoji`)
    is_bot: bool
    at: float
    answer: asyncio.Future[bool]


class VotesMixin(StorageBase):
    """Reaction events and the votes they make, written by one group-commit writer."""

    def __init__(self, db: Any) -> None:
        super().__init__(db)
        self._vote_queue: asyncio.Queue[_Event | None] = asyncio.Queue()  # None, queued last, stops the writer
        self._vote_writer: asyncio.Task[None] | None = None
        self._votes_closed = False

    async def add_vote(self, message_id: int, member_id: int, emoji: str, *, at: float, is_bot: bool = False) -> bool:
        """Record a reaction on one of our posts; True if it created a new vote. Bots are logged, never counted."""
        if self._opted_out(member_id):
            return False
        return await self._queue_vote(message_id, member_id, emoji, "add", is_bot, at)

    async def remove_vote(self, message_id: int, member_id: int, emoji: str, *, at: float) -> bool:
        """Cancel a reaction; True if a vote was removed."""
        if self._opted_out(member_id):
            return False  # they hold no vote, and the removal event would hold their id
        return await self._queue_vote(message_id, member_id, emoji, "remove", False, at)

    async def clear_votes(self, message_id: int, emoji: str | None = None, *, at: float) -> bool:
        """A moderator removed every reaction of a post (or every `emoji` one): its votes go; True if any did.

        Discord sends one event for such a clear, not a removal per member. It goes through the writer, so the
        reactions queued before it are applied first, and those after it count again.
        """
        return await self._queue_vote(message_id, 0, emoji or "", "clear", False, at)

    async def _queue_vote(
        self, message_id: int, member_id: int, emoji: str, action: str, is_bot: bool, at: float
    ) -> bool:
        """Hand an event to the writer (started on first use) and wait for its answer."""
        if self._votes_closed:
            raise RuntimeError("storage is closed: the reaction was not recorded")
        if self._vote_writer is None or self._vote_writer.done():
            self._vote_writer = asyncio.create_task(self._write_votes(), name="kilroy-vote-writer")
            self._vote_writer.add_done_callback(self._vote_writer_done)
        event = _Event(message_id, member_id, emoji, action, is_bot, at, asyncio.get_running_loop().create_future())
        self._vote_queue.put_nowait(event)
        # a caller cancelled from here on only cancels its future: the event stays queued and is written all the same
        return await event.answer

    async def _shutdown(self) -> None:
        """Write what is queued, stop the writer, then let the connection close."""
        self._votes_closed = True
        if self._vote_writer is not None and not self._vote_writer.done():
            self._vote_queue.put_nowait(None)
            await _finish(self._vote_writer)  # even if our caller is cancelled: the queued events are acknowledged
        await super()._shutdown()

    async def _write_votes(self) -> None:
        """The writer task: take what is queued, commit it as one batch, repeat until `_shutdown` queues None."""
        queue = self._vote_queue
        while True:
            batch = [await queue.get()]
            while len(batch) < BATCH and not queue.empty():
                batch.append(queue.get_nowait())
            events = [e for e in batch if e is not None]
            if events:
                await self._commit_votes(events)
            if len(events) < len(batch):
                return

    def _vote_writer_done(self, writer: asyncio.Task[None]) -> None:
        """Fail what a dead writer left queued, unless a new writer took over: its callers must not wait forever.

        Only a cancelled writer (the loop closing without closing the storage) leaves events: it may never have run.
        """
        if writer is not self._vote_writer:
            return
        leftover = [self._vote_queue.get_nowait() for _ in range(self._vote_queue.qsize())]
        _fail([e for e in leftover if e is not None], RuntimeError(STOPPED))

    async def _commit_votes(self, events: list[_Event]) -> None:
        """One transaction for the batch, then every caller's answer: its own result, or the batch's error."""
        try:
            async with self.transaction():
                answers = await self._apply_votes(events)
        except Exception as error:  # rolled back: nothing of the batch was stored, every caller hears why
            _fail(events, error)
            return
        except asyncio.CancelledError:
            _fail(events, RuntimeError(STOPPED))
            raise
        for event, answer in zip(events, answers, strict=True):
            if not event.answer.done():  # a cancelled caller's future is already done
                event.answer.set_result(answer)

    async def _apply_votes(self, events: list[_Event]) -> list[bool]:
        """The batch's writes (inside a transaction); each event's answer as if the events were applied one by one.

        A clear cuts the batch: the reactions before it are written, then the clear, then the rest.
        """
        answers: list[bool] = []
        start = 0
        for i, e in enumerate(events):
            if e.action == "clear":
                answers += await self._apply_reactions(events[start:i])
                answers.append(await self._apply_clear(e))
                start = i + 1
        return answers + await self._apply_reactions(events[start:])

    async def _apply_clear(self, e: _Event) -> bool:
        """Delete the post's votes (of one emoji when the event names one)."""
        posts = await self._post_ids({e.message_id})
        if e.message_id not in posts:
            return False
        sql, args = "DELETE FROM votes WHERE post_id = ?", [posts[e.message_id]]
        if e.emoji:
            sql, args = sql + " AND emoji = ?", [*args, e.emoji]
        cursor = await self.db.execute(sql, args)
        return cursor.rowcount > 0

    async def _apply_reactions(self, events: list[_Event]) -> list[bool]:
        """Adds and removes, replayed in order over the votes they touch, written with a fixed number of statements."""
        if not events:
            return []
        posts = await self._post_ids({e.message_id for e in events})
        present = await self._existing_votes(
            {(posts[e.message_id], e.member_id, e.emoji) for e in events if e.message_id in posts}
        )
        before = set(present)
        created: dict[Key, float] = {}  # votes this batch (re)created, with the time of the add that created them
        logged: list[tuple[int, int, str, str, int, float]] = []
        answers: list[bool] = []
        for e in events:
            post_id = posts.get(e.message_id)
            # the opt-out again, under the write lock: a /forget-me may have landed since the event was queued
            if post_id is None or self._opted_out(e.member_id):
                answers.append(False)
                continue
            logged.append((post_id, e.member_id, e.emoji, e.action, int(e.is_bot), e.at))
            key = (post_id, e.member_id, e.emoji)
            if e.is_bot:
                answers.append(False)
            elif e.action == "add":
                answers.append(key not in present)
                if key not in present:
                    present.add(key)
                    created[key] = e.at
            else:
                answers.append(key in present)
                present.discard(key)
                created.pop(key, None)
        # a vote that was there and was removed, or removed and added again (it takes the new add's time), goes
        gone = [key for key in before if key not in present or key in created]
        if logged:
            await self.db.executemany(
                "INSERT INTO reaction_events (post_id, member_id, emoji, action, is_bot, at) VALUES (?, ?, ?, ?, ?, ?)",
                logged,
            )
        if gone:
            await self.db.executemany("DELETE FROM votes WHERE post_id = ? AND member_id = ? AND emoji = ?", gone)
        if created:
            await self.db.executemany(
                "INSERT INTO votes (post_id, member_id, emoji, at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [(*key, at) for key, at in created.items()],
            )
        return answers

    async def _post_ids(self, message_ids: set[int]) -> dict[int, int]:
        """Message id -> post id, for those of `message_ids` that are our posts."""
        found: dict[int, int] = {}
        for chunk in chunks(list(message_ids), 500):
            rows = await self.db.execute_fetchall(
                f"SELECT id, message_id FROM posts WHERE message_id IN ({','.join('?' * len(chunk))})", chunk
            )
            found.update((int(m), int(i)) for i, m in rows)
        return found

    async def _existing_votes(self, keys: set[Key]) -> set[Key]:
        """Those of `keys` that are votes now."""
        found: set[Key] = set()
        for chunk in chunks(list(keys), 300):  # three parameters a key: under SQLite's oldest limit of 999
            # typed: PostgreSQL would read untyped VALUES parameters as text
            values = ",".join(["(CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS TEXT))"] * len(chunk))
            # a join on a VALUES list searches the primary key; `(a, b, c) IN (VALUES ...)` would scan the table
            rows = await self.db.execute_fetchall(
                f"SELECT v.post_id, v.member_id, v.emoji FROM (VALUES {values}) AS k JOIN votes v "
                "ON v.post_id = k.column1 AND v.member_id = k.column2 AND v.emoji = k.column3",
                [part for key in chunk for part in key],
            )
            found.update((int(p), int(m), str(e)) for p, m, e in rows)
        return found


def _fail(events: list[_Event], error: BaseException) -> None:
    """Give `error` to every caller still waiting."""
    for event in events:
        if not event.answer.done():
            event.answer.set_exception(error)
