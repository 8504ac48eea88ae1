"""Storage reads and writes that only tests need (the bot never looks a post up by message, counts posts, marks
posts trained outside a run, or appends a lone story line): kept here so that bot/storage holds the bot's paths."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from bot.storage import Post, Storage, migrations
from bot.storage._conn import connect
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


async def migrate_to(target: Path | str, number: int) -> None:
    """Apply this backend's migrations up to `number` only: a database as an older release left it."""
    db = await connect(target)
    try:
        await db.apply_migrations([m for m in migrations(db.dialect.name) if m[0] <= number])
    finally:
        await db.close()


async def rows_holding(target: Path | str, needles: Iterable[object]) -> list[tuple[str, str]]:
    """Every (table, column) of the database where a value equals or contains one of `needles` (either backend)."""
    needles = list(needles)
    found = []
    db = await connect(target)
    try:
        if db.dialect.postgres:
            columns = await db.execute_fetchall(
                "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public' "
                "ORDER BY table_name, ordinal_position"
            )
        else:
            columns = []
            for (table,) in await db.execute_fetchall("SELECT name FROM sqlite_master WHERE type = 'table'"):
                columns += [(table, r[1]) for r in await db.execute_fetchall(f"PRAGMA table_info({table})")]
        for table, col in columns:
            for needle in needles:
                text = f"CAST({col} AS TEXT)"
                rows = await db.execute_fetchall(
                    f"SELECT COUNT(*) FROM {table} WHERE {text} = ? OR {db.dialect.instr(text, '?')} > 0",
                    (str(needle), str(needle)),
                )
                if rows[0][0]:
                    found.append((str(table), str(col)))
    finally:
        await db.close()
    return found
