"""Storage reads and writes that only tests need (the bot never looks a post up by message, counts posts, marks
posts trained outside a run, or appends a lone story line): kept here so that bot/storage holds the bot's paths."""

from __future__ import annotations

from collections.abc import Iterable

from bot.storage import Post, Storage
from bot.storage.posts import _post


async def post_by_message(storage: Storage, message_id: int) -> Post | None:
    """The post with this Discord message id, or None if it is not ours."""
    async with storage.db.execute("SELECT * FROM posts WHERE message_id = ?", (message_id,)) as cur:
        row = await cur.fetchone()
    return _post(cur.description, row) if row else None


async def get_post(storage: Storage, post_id: int) -> Post | None:
    """The post with this id."""
    async with storage.db.execute("SELECT * FROM posts WHERE id = ?", (post_id,)) as cur:
        row = await cur.fetchone()
    return _post(cur.description, row) if row else None


async def number_of_posts(storage: Storage) -> int:
    """How many posts exist."""
    async with storage.db.execute("SELECT COUNT(*) FROM posts") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def mark_trained(storage: Storage, post_ids: Iterable[int], *, at: float, run_id: int | None) -> None:
    """Mark posts as trained on, as a finished run's promotion would (without the run)."""
    ids = list(post_ids)
    async with storage.transaction() as db:
        marks = ",".join("?" * len(ids))
        await db.execute(f"UPDATE posts SET trained_at = ?, trained_run = ? WHERE id IN ({marks})", [at, run_id, *ids])


async def add_story_line(
    storage: Storage,
    story_id: int,
    *,
    speaker: str,
    text: str,
    member_id: int | None,
    at: float,
    post_id: int | None = None,
) -> None:
    """Append one line to a story (the bot appends a whole exchange at once, with `add_story_turn`)."""
    async with storage.transaction() as db:
        async with db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM story_lines WHERE story_id = ?", (story_id,)) as c:
            (seq,) = await c.fetchone()
        await db.execute(
            "INSERT INTO story_lines (story_id, seq, speaker, text, member_id, post_id, at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (story_id, seq, speaker, text, member_id, post_id, at),
        )
