"""Posts, votes and replies: the engagement aggregate, and the records scoring reads.

Live reactions (`add_vote`, `remove_vote`) are written in batches by the writer in `votes.py`; the catch-up pass
(`reconcile_votes`) writes here, under the same write lock.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from bot.domain.records import NewPost, Post, PostRecord, Reply, Vote
from bot.storage._db import StorageBase, chunks


@dataclass(frozen=True)
class PostCandidate:
    """One of the samples drawn for a best-of-N post (the post's prompt ids apply to it)."""

    post_id: int
    idx: int
    text: str
    completion_ids: tuple[int, ...]
    predicted: float | None
    postable: bool
    chosen: bool


class PostsMixin(StorageBase):
    """Posts and the engagement they got."""

    # --- posts -------------------------------------------------------------------------------------------------------

    async def add_post(self, post: NewPost) -> int:
        """Record a post; return its id. The same message id twice returns the first row's id."""
        async with self._write:
            return await self._insert_post(post)

    async def _insert_post(self, post: NewPost) -> int:
        """The INSERT of a post, for callers already holding the write lock (or inside a transaction)."""
        cur = await self.db.execute(
            """INSERT INTO posts (message_id, channel_id, guild_id, kind, text, prompt, prompt_ids, completion_ids,
                                  adapter, params, created_at, trial_id, arm)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (message_id) DO NOTHING RETURNING id""",
            (
                post.message_id,
                post.channel_id,
                post.guild_id,
                post.kind,
                post.text,
                post.prompt,
                json.dumps(list(post.prompt_ids)),
                json.dumps(list(post.completion_ids)),
                post.adapter,
                json.dumps(post.params),
                post.created_at,
                post.trial_id,
                post.arm,
            ),
        )
        row = await cur.fetchone()
        if row is not None:
            return int(row[0])
        found = await self.post_id_by_message(post.message_id) if post.message_id is not None else None
        if found is None:  # pragma: no cover - only reachable through a race we do not have (one connection)
            raise RuntimeError("post insert failed")
        return found

    async def add_candidates(self, post_id: int, candidates: Sequence[Any], *, chosen: int) -> None:
        """Record the candidates a post was picked from (objects with text, completion_ids, predicted, postable);
        `chosen` is the index of the one sent. Idempotent: a replay keeps the first rows."""
        async with self.transaction():
            await self.db.executemany(
                """INSERT INTO post_candidates (post_id, idx, text, completion_ids, predicted, postable, chosen)
                   VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (post_id, idx) DO NOTHING""",
                [
                    (
                        post_id,
                        i,
                        c.text,
                        json.dumps(list(c.completion_ids)),
                        c.predicted,
                        int(bool(c.postable)),
                        int(i == chosen),
                    )
                    for i, c in enumerate(candidates)
                ],
            )

    async def post_candidates(self, post_ids: Iterable[int]) -> dict[int, list[PostCandidate]]:
        """The candidates of these posts, in draw order; posts without any are absent."""
        out: dict[int, list[PostCandidate]] = {}
        for chunk in chunks(list(post_ids), 500):
            marks = ",".join("?" * len(chunk))
            async with self.db.execute(
                f"""SELECT post_id, idx, text, completion_ids, predicted, postable, chosen FROM post_candidates
                    WHERE post_id IN ({marks}) ORDER BY post_id, idx""",
                chunk,
            ) as cur:
                for pid, idx, text, ids, predicted, postable, chosen in await cur.fetchall():
                    out.setdefault(int(pid), []).append(
                        PostCandidate(
                            int(pid),
                            int(idx),
                            str(text),
                            tuple(json.loads(ids)),
                            None if predicted is None else float(predicted),
                            bool(postable),
                            bool(chosen),
                        )
                    )
        return out

    async def post_id_by_message(self, message_id: int) -> int | None:
        """Only the id of our post with this message id (what a reaction needs), or None."""
        async with self.db.execute("SELECT id FROM posts WHERE message_id = ?", (message_id,)) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else None

    async def posts_since(self, created_after: float) -> list[Post]:
        """Posts created after a time, oldest first (catch-up after downtime)."""
        async with self.db.execute(
            "SELECT * FROM posts WHERE created_at > ? AND message_id IS NOT NULL ORDER BY created_at", (created_after,)
        ) as cur:
            rows = await cur.fetchall()
            return [_post(cur.description, r) for r in rows]

    # --- engagement --------------------------------------------------------------------------------------------------

    async def reconcile_votes(
        self, message_id: int, current: Iterable[tuple[int, str]], *, at: float, seen_at: float | None = None
    ) -> int:
        """Make the stored human votes of a post equal `current` (member, emoji) pairs; return rows changed.

        `seen_at`: when the caller began reading `current` from Discord (several HTTP pages, before this
        transaction). A live reaction stored since then is newer than that view, so it is left as it is: a vote
        added since stays, and a pair removed since is not put back.
        """
        post = await self.post_id_by_message(message_id)
        if post is None:
            return 0
        current = list(current)
        changed = 0
        async with self.transaction():
            # the opt-out under the write lock, as forget_member writes it: checked before waiting for the lock,
            # a forget landing in between was missed and the member's vote written back
            wanted = {(m, e) for m, e in current if not self._opted_out(m)}
            # read inside the transaction: a live reaction landing between read and write cannot be undone
            async with self.db.execute("SELECT member_id, emoji FROM votes WHERE post_id = ?", (post,)) as cur:
                have = {(int(r[0]), str(r[1])) for r in await cur.fetchall()}
            if seen_at is not None:
                async with self.db.execute(
                    "SELECT member_id, emoji FROM reaction_events WHERE post_id = ? AND at >= ? AND is_bot = 0",
                    (post, seen_at),
                ) as cur:
                    newer = {(int(r[0]), str(r[1])) for r in await cur.fetchall()}
                wanted = (wanted - newer) | (have & newer)  # for pairs touched live since, what is stored wins
            for member_id, emoji in sorted(wanted - have):
                await self.db.execute(
                    "INSERT INTO votes (post_id, member_id, emoji, at) VALUES (?, ?, ?, ?)",
                    (post, member_id, emoji, at),
                )
                changed += 1
            for member_id, emoji in sorted(have - wanted):
                await self.db.execute(
                    "DELETE FROM votes WHERE post_id = ? AND member_id = ? AND emoji = ?", (post, member_id, emoji)
                )
                changed += 1
        return changed

    async def add_reply(
        self, message_id: int, parent_message_id: int, member_id: int, *, at: float, length: int = 0
    ) -> bool:
        """Record a member's reply to one of our posts; True if new."""
        if self._opted_out(member_id):
            return False
        post_id = await self.post_id_by_message(parent_message_id)
        if post_id is None:
            return False
        async with self.transaction():
            if self._opted_out(member_id):
                return False
            cur = await self.db.execute(
                "INSERT INTO replies (message_id, post_id, member_id, length, at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                (message_id, post_id, member_id, length, at),
            )
            return cur.rowcount == 1

    async def remove_reply(self, message_id: int) -> bool:
        """Forget a deleted reply."""
        return await self.remove_replies([message_id]) == 1

    async def remove_replies(self, message_ids: Iterable[int]) -> int:
        """Forget deleted replies (a moderator's purge deletes many at once); return how many were replies."""
        removed = 0
        async with self._write:
            for chunk in chunks(list(message_ids), 500):
                cur = await self.db.execute(
                    f"DELETE FROM replies WHERE message_id IN ({','.join('?' * len(chunk))})", chunk
                )
                removed += cur.rowcount
        return removed

    # --- records for scoring and training ----------------------------------------------------------------------------

    async def post_records(
        self,
        *,
        created_before: float | None = None,
        created_after: float | None = None,
        untrained_only: bool = False,
        limit: int | None = None,
        trial_id: int | None = None,
        guild_id: int | None = None,
    ) -> list[PostRecord]:
        """Posts with their votes and replies, oldest first; `limit` keeps the newest; `guild_id` scopes to a server.

        Posts whose prompt was redacted for a forgotten member are left out: they cannot be trained on.
        """
        where: list[str] = ["redacted = 0"]
        args: list[Any] = []
        if guild_id is not None:
            where.append("guild_id = ?")
            args.append(guild_id)
        if trial_id is not None:
            where.append("trial_id = ?")
            args.append(trial_id)
        if created_before is not None:
            where.append("created_at <= ?")
            args.append(created_before)
        if created_after is not None:
            where.append("created_at > ?")
            args.append(created_after)
        if untrained_only:
            where.append("trained_at IS NULL AND trained_run IS NULL")
        sql = f"SELECT * FROM posts WHERE {' AND '.join(where)} ORDER BY created_at DESC, id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        async with self.db.execute(sql, args) as cur:
            posts = [_post(cur.description, r) for r in await cur.fetchall()]
        posts.reverse()
        if not posts:
            return []
        ids = [p.id for p in posts]
        votes: dict[int, list[Vote]] = {i: [] for i in ids}
        replies: dict[int, list[Reply]] = {i: [] for i in ids}
        for chunk in chunks(ids, 500):
            marks = ",".join("?" * len(chunk))
            async with self.db.execute(
                f"SELECT post_id, member_id, emoji, at FROM votes WHERE post_id IN ({marks})", chunk
            ) as cur:
                for pid, member, emoji, at in await cur.fetchall():
                    votes[pid].append(Vote(int(member), str(emoji), float(at)))
            async with self.db.execute(
                f"SELECT post_id, message_id, member_id, at FROM replies WHERE post_id IN ({marks})", chunk
            ) as cur:
                for pid, mid, member, at in await cur.fetchall():
                    replies[pid].append(Reply(int(mid), int(member), float(at)))
        return [PostRecord(p, tuple(votes[p.id]), tuple(replies[p.id])) for p in posts]


def _post(description: Any, row: Any) -> Post:
    d = dict(zip([c[0] for c in description], row, strict=True))
    return Post(
        id=int(d["id"]),
        message_id=d["message_id"],
        channel_id=int(d["channel_id"]),
        guild_id=d["guild_id"],
        kind=str(d["kind"]),
        text=str(d["text"]),
        prompt=str(d["prompt"]),
        prompt_ids=tuple(json.loads(d["prompt_ids"])),
        completion_ids=tuple(json.loads(d["completion_ids"])),
        adapter=str(d["adapter"]),
        params=json.loads(d["params"]),
        created_at=float(d["created_at"]),
        trained_at=d["trained_at"],
        trained_run=d.get("trained_run"),
        trial_id=d.get("trial_id"),
        arm=d.get("arm"),
    )
