"""All persistence: aiosqlite, WAL, numbered migrations, and every SQL statement of the project.

Writes are idempotent through natural keys, so a replayed gateway event or a catch-up pass can run freely.
Rows come back as small frozen dataclasses; nothing above this module depends on the driver.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NewPost:
    """What a generator produced and where it was posted."""

    channel_id: int
    text: str
    adapter: str
    created_at: float
    message_id: int | None = None
    guild_id: int | None = None
    kind: str = "post"
    prompt: str = ""
    prompt_ids: Sequence[int] = ()
    completion_ids: Sequence[int] = ()
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Post:
    id: int
    message_id: int | None
    channel_id: int
    guild_id: int | None
    kind: str
    text: str
    prompt: str
    prompt_ids: tuple[int, ...]
    completion_ids: tuple[int, ...]
    adapter: str
    params: dict[str, Any]
    created_at: float
    trained_at: float | None


@dataclass(frozen=True)
class Vote:
    member_id: int
    emoji: str
    at: float


@dataclass(frozen=True)
class Reply:
    message_id: int
    member_id: int
    at: float


@dataclass(frozen=True)
class PostRecord:
    """A post with its current votes and replies: what scoring reads."""

    post: Post
    votes: tuple[Vote, ...]
    replies: tuple[Reply, ...]


@dataclass(frozen=True)
class TrainingRun:
    id: int
    reason: str
    status: str
    started_at: float
    finished_at: float | None
    adapter: str | None
    promoted: bool | None
    message: str | None
    metrics: dict[str, Any]


@dataclass(frozen=True)
class StoryLine:
    seq: int
    speaker: str
    text: str
    member_id: int | None
    at: float


@dataclass(frozen=True)
class Story:
    id: int
    channel_id: int
    instruction: str
    opening: str
    started_at: float
    ended_at: float | None
    lines: tuple[StoryLine, ...]


def _migrations() -> list[tuple[int, str]]:
    files = resources.files("bot") / "migrations"
    found = []
    for entry in files.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text(encoding="utf-8")))
    return sorted(found)


class Storage:
    """The database. Open with `async with Storage.open(path) as storage:`."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db
        # One connection serves many coroutines: gateway events arrive concurrently. Every write goes through this
        # lock, so no statement of one coroutine can land inside (or be rolled back with) another's transaction.
        self._write = asyncio.Lock()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """Serialised write transaction: BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any error."""
        async with self._write:
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                await self.db.execute("ROLLBACK")
                raise
            await self.db.execute("COMMIT")

    @classmethod
    @asynccontextmanager
    async def open(cls, path: Path | str) -> AsyncIterator[Storage]:
        """Open (creating if needed), migrate, and close on exit."""
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(str(path), isolation_level=None)
        try:
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA foreign_keys=ON")
            await db.execute("PRAGMA synchronous=NORMAL")
            await db.execute("PRAGMA busy_timeout=5000")
            storage = cls(db)
            await storage.migrate()
            yield storage
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
        for number, sql in _migrations():
            if number <= version:
                continue
            log.info("applying migration %04d", number)
            # executescript commits first; wrap it in an explicit transaction so a failure leaves no half schema
            await self.db.executescript(f"BEGIN;\n{sql}\nPRAGMA user_version = {number};\nCOMMIT;")
            version = number
        return version

    # --- posts -------------------------------------------------------------------------------------------------------

    async def add_post(self, post: NewPost) -> int:
        """Record a post; return its id. The same message id twice returns the first row's id."""
        async with self._write:
            cur = await self.db.execute(
                """INSERT INTO posts (message_id, channel_id, guild_id, kind, text, prompt, prompt_ids, completion_ids,
                                      adapter, params, created_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (message_id) DO NOTHING""",
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
                ),
            )
            if cur.rowcount == 1 and cur.lastrowid is not None:
                return cur.lastrowid
            found = await self.post_by_message(post.message_id) if post.message_id is not None else None
            if found is None:  # pragma: no cover - only reachable through a race we do not have (one connection)
                raise RuntimeError("post insert failed")
            return found.id

    async def post_by_message(self, message_id: int) -> Post | None:
        """The post with this Discord message id, or None if it is not ours."""
        async with self.db.execute("SELECT * FROM posts WHERE message_id = ?", (message_id,)) as cur:
            row = await cur.fetchone()
        return _post(cur.description, row) if row else None

    async def get_post(self, post_id: int) -> Post | None:
        """The post with this id."""
        async with self.db.execute("SELECT * FROM posts WHERE id = ?", (post_id,)) as cur:
            row = await cur.fetchone()
        return _post(cur.description, row) if row else None

    async def posts_since(self, created_after: float) -> list[Post]:
        """Posts created after a time, oldest first (catch-up after downtime)."""
        async with self.db.execute(
            "SELECT * FROM posts WHERE created_at > ? AND message_id IS NOT NULL ORDER BY created_at", (created_after,)
        ) as cur:
            rows = await cur.fetchall()
            return [_post(cur.description, r) for r in rows]

    async def count_posts(self) -> int:
        """How many posts exist."""
        async with self.db.execute("SELECT COUNT(*) FROM posts") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    # --- engagement --------------------------------------------------------------------------------------------------

    async def add_vote(self, message_id: int, member_id: int, emoji: str, *, at: float, is_bot: bool = False) -> bool:
        """Record a reaction on one of our posts; True if it created a new vote. Bots are logged, never counted."""
        post = await self.post_by_message(message_id)
        if post is None:
            return False
        async with self.transaction():
            await self.db.execute(
                "INSERT INTO reaction_events (post_id, member_id, emoji, action, is_bot, at) "
                "VALUES (?, ?, ?, 'add', ?, ?)",
                (post.id, member_id, emoji, int(is_bot), at),
            )
            created = False
            if not is_bot:
                cur = await self.db.execute(
                    "INSERT INTO votes (post_id, member_id, emoji, at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    (post.id, member_id, emoji, at),
                )
                created = cur.rowcount == 1
        return created

    async def remove_vote(self, message_id: int, member_id: int, emoji: str, *, at: float) -> bool:
        """Cancel a reaction; True if a vote was removed."""
        post = await self.post_by_message(message_id)
        if post is None:
            return False
        async with self.transaction():
            await self.db.execute(
                "INSERT INTO reaction_events (post_id, member_id, emoji, action, at) VALUES (?, ?, ?, 'remove', ?)",
                (post.id, member_id, emoji, at),
            )
            cur = await self.db.execute(
                "DELETE FROM votes WHERE post_id = ? AND member_id = ? AND emoji = ?", (post.id, member_id, emoji)
            )
        return cur.rowcount == 1

    async def reconcile_votes(self, message_id: int, current: Iterable[tuple[int, str]], *, at: float) -> int:
        """Make the stored human votes of a post equal `current` (member, emoji) pairs; return rows changed."""
        post = await self.post_by_message(message_id)
        if post is None:
            return 0
        wanted = set(current)
        async with self.db.execute("SELECT member_id, emoji FROM votes WHERE post_id = ?", (post.id,)) as cur:
            have = {(int(r[0]), str(r[1])) for r in await cur.fetchall()}
        changed = 0
        async with self.transaction():
            for member_id, emoji in sorted(wanted - have):
                await self.db.execute(
                    "INSERT INTO votes (post_id, member_id, emoji, at) VALUES (?, ?, ?, ?)",
                    (post.id, member_id, emoji, at),
                )
                changed += 1
            for member_id, emoji in sorted(have - wanted):
                await self.db.execute(
                    "DELETE FROM votes WHERE post_id = ? AND member_id = ? AND emoji = ?", (post.id, member_id, emoji)
                )
                changed += 1
        return changed

    async def add_reply(
        self, message_id: int, parent_message_id: int, member_id: int, *, at: float, length: int = 0
    ) -> bool:
        """Record a member's reply to one of our posts; True if new."""
        async with self._write:
            post = await self.post_by_message(parent_message_id)
            if post is None:
                return False
            cur = await self.db.execute(
                "INSERT INTO replies (message_id, post_id, member_id, length, at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                (message_id, post.id, member_id, length, at),
            )
            return cur.rowcount == 1

    async def remove_reply(self, message_id: int) -> bool:
        """Forget a deleted reply."""
        async with self._write:
            cur = await self.db.execute("DELETE FROM replies WHERE message_id = ?", (message_id,))
            return cur.rowcount == 1

    async def forget_member(self, member_id: int) -> int:
        """Delete every vote, reaction event and reply of a member; return rows deleted."""
        async with self._write:
            total = 0
            for table in ("votes", "reaction_events", "replies"):
                cur = await self.db.execute(f"DELETE FROM {table} WHERE member_id = ?", (member_id,))
                total += cur.rowcount
            return total

    # --- records for scoring and training ----------------------------------------------------------------------------

    async def post_records(
        self,
        *,
        created_before: float | None = None,
        created_after: float | None = None,
        untrained_only: bool = False,
        limit: int | None = None,
    ) -> list[PostRecord]:
        """Posts with their votes and replies, oldest first; `limit` keeps the newest."""
        where, args = ["1=1"], []
        if created_before is not None:
            where.append("created_at <= ?")
            args.append(created_before)
        if created_after is not None:
            where.append("created_at > ?")
            args.append(created_after)
        if untrained_only:
            where.append("trained_at IS NULL")
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
        for chunk in _chunks(ids, 500):
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

    async def mark_trained(self, post_ids: Iterable[int], *, at: float, run_id: int | None) -> None:
        """Mark posts as used by a training run (only after the run has safely finished)."""
        async with self._write:
            ids = list(post_ids)
            for chunk in _chunks(ids, 500):
                marks = ",".join("?" * len(chunk))
                await self.db.execute(
                    f"UPDATE posts SET trained_at = ?, trained_run = ? WHERE id IN ({marks})", [at, run_id, *chunk]
                )

    # --- training runs and adapter versions --------------------------------------------------------------------------

    async def start_run(self, reason: str, *, at: float) -> int:
        """Open a training-run row; return its id."""
        async with self._write:
            cur = await self.db.execute(
                "INSERT INTO training_runs (reason, status, started_at) VALUES (?, 'running', ?)", (reason, at)
            )
            assert cur.lastrowid is not None
            return cur.lastrowid

    async def fail_stale_runs(self, *, at: float) -> int:
        """Close runs left 'running' by a process that died (one run at a time, so any open one is stale)."""
        async with self._write:
            cur = await self.db.execute(
                "UPDATE training_runs SET status = 'failed', finished_at = ?, message = 'interrupted: the training "
                "process stopped before finishing' WHERE status = 'running'",
                (at,),
            )
        return cur.rowcount

    async def finish_run(
        self,
        run_id: int,
        *,
        status: str,
        at: float,
        adapter: str | None = None,
        promoted: bool | None = None,
        message: str | None = None,
        metrics: dict[str, Any] | None = None,
    ) -> None:
        """Close a training-run row with its outcome."""
        async with self._write:
            await self.db.execute(
                "UPDATE training_runs SET status = ?, finished_at = ?, adapter = ?, promoted = ?, message = ?, "
                "metrics = ? WHERE id = ?",
                (
                    status,
                    at,
                    adapter,
                    None if promoted is None else int(promoted),
                    message,
                    json.dumps(metrics or {}),
                    run_id,
                ),
            )

    async def runs(self, limit: int = 20) -> list[TrainingRun]:
        """The latest training runs, newest first."""
        async with self.db.execute("SELECT * FROM training_runs ORDER BY id DESC LIMIT ?", (limit,)) as cur:
            rows = await cur.fetchall()
            cols = [c[0] for c in cur.description]
        out = []
        for row in rows:
            d = dict(zip(cols, row, strict=True))
            d["metrics"] = json.loads(d["metrics"] or "{}")
            d["promoted"] = None if d["promoted"] is None else bool(d["promoted"])
            out.append(TrainingRun(**d))
        return out

    async def record_adapter(
        self, name: str, *, parent: str | None, run_id: int | None, at: float, metrics: dict[str, Any]
    ) -> None:
        """Remember an adapter version written by a run."""
        async with self._write:
            await self.db.execute(
                "INSERT INTO adapter_versions (name, parent, run_id, created_at, metrics) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET metrics = excluded.metrics",
                (name, parent, run_id, at, json.dumps(metrics)),
            )

    # --- stories -----------------------------------------------------------------------------------------------------

    async def active_story(self, channel_id: int) -> Story | None:
        """The channel's running story with its lines, or None."""
        async with self.db.execute(
            "SELECT id, channel_id, instruction, opening, started_at, ended_at FROM stories "
            "WHERE channel_id = ? AND ended_at IS NULL",
            (channel_id,),
        ) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        async with self.db.execute(
            "SELECT seq, speaker, text, member_id, at FROM story_lines WHERE story_id = ? ORDER BY seq", (row[0],)
        ) as cur:
            lines = tuple(StoryLine(int(s), str(sp), str(t), m, float(a)) for s, sp, t, m, a in await cur.fetchall())
        return Story(int(row[0]), int(row[1]), str(row[2]), str(row[3]), float(row[4]), row[5], lines)

    async def start_story(
        self, channel_id: int, *, instruction: str, opening: str, started_by: int | None, at: float
    ) -> int:
        """Start a story in a channel; raises StoryExists if one is running there."""
        async with self._write:
            try:
                cur = await self.db.execute(
                    "INSERT INTO stories (channel_id, instruction, opening, started_by, started_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (channel_id, instruction, opening, started_by, at),
                )
            except aiosqlite.IntegrityError as exc:
                raise StoryExists(channel_id) from exc
            assert cur.lastrowid is not None
            return cur.lastrowid

    async def add_story_line(
        self, story_id: int, *, speaker: str, text: str, member_id: int | None, at: float, post_id: int | None = None
    ) -> int:
        """Append a line to a story; return its sequence number."""
        async with self.transaction():
            async with self.db.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM story_lines WHERE story_id = ?", (story_id,)
            ) as cur:
                row = await cur.fetchone()
            seq = int(row[0]) if row else 1
            await self.db.execute(
                "INSERT INTO story_lines (story_id, seq, speaker, text, member_id, post_id, at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (story_id, seq, speaker, text, member_id, post_id, at),
            )
        return seq

    async def end_story(self, channel_id: int, *, at: float) -> bool:
        """End the channel's running story; True if there was one."""
        async with self._write:
            cur = await self.db.execute(
                "UPDATE stories SET ended_at = ? WHERE channel_id = ? AND ended_at IS NULL", (at, channel_id)
            )
            return cur.rowcount == 1


class StoryExists(Exception):
    """A story is already running in this channel."""

    def __init__(self, channel_id: int) -> None:
        super().__init__(f"a story is already running in channel {channel_id}")
        self.channel_id = channel_id


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
    )


def _chunks(items: list[int], size: int) -> Iterable[list[int]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
