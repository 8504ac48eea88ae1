import sqlite3

import pytest

from bot.storage import NewPost, Storage, StoryExists, migrations
from bot.storage._conn import IntegrityError, connect
from tests.support.storage import get_post, mark_trained, migrate_to, number_of_posts, post_by_message


def post(message_id: int, channel: int = 1, at: float = 100.0) -> NewPost:
    return NewPost(
        channel_id=channel,
        text=f"post {message_id}",
        adapter="base",
        created_at=at,
        message_id=message_id,
        prompt_ids=(0,),
        completion_ids=(5, 6),
    )


async def score_rows(storage: Storage, message_id: int):
    (record,) = [r for r in await storage.post_records() if r.post.message_id == message_id]
    return record


async def test_migrates_fresh_db_to_latest(storage):
    """A new database is migrated to the latest schema version."""
    assert await storage.schema_version() >= 1


async def test_migrations_resume_on_existing_db(database):
    """Reopening an existing database keeps its data and applies nothing twice."""
    path = database
    async with Storage.open(path) as s:
        await s.add_post(post(1))
        version = await s.schema_version()
    async with Storage.open(path) as s:
        assert await s.schema_version() == version
        assert await number_of_posts(s) == 1


async def test_wal_and_foreign_keys(storage):
    """The database runs in WAL mode (SQLite) with foreign keys enforced (both)."""
    if not storage.dialect.postgres:
        async with storage.db.execute("PRAGMA journal_mode") as cur:
            assert (await cur.fetchone())[0] == "wal"
    with pytest.raises(IntegrityError):
        await storage.db.execute("INSERT INTO votes (post_id, member_id, emoji, at) VALUES (12345, 1, 'x', 1.0)")


async def test_same_message_id_twice_keeps_one_post(storage):
    """Recording the same Discord message twice returns the same post."""
    a = await storage.add_post(post(7))
    b = await storage.add_post(post(7))
    assert a == b and await number_of_posts(storage) == 1


async def test_duplicate_reaction_event_counts_once(storage):
    """The same reaction event twice gives one vote."""
    await storage.add_post(post(1))
    assert await storage.add_vote(1, 42, "❤️", at=1.0) is True
    assert await storage.add_vote(1, 42, "❤️", at=2.0) is False
    assert len((await score_rows(storage, 1)).votes) == 1


async def test_remove_after_add_cancels(storage):
    """A removal after an add leaves no vote; removing again is harmless."""
    await storage.add_post(post(1))
    await storage.add_vote(1, 42, "❤️", at=1.0)
    assert await storage.remove_vote(1, 42, "❤️", at=2.0) is True
    assert await storage.remove_vote(1, 42, "❤️", at=3.0) is False
    assert (await score_rows(storage, 1)).votes == ()


async def test_bot_reaction_logged_never_counted(storage):
    """A bot's reaction is kept in the event log but never becomes a vote."""
    await storage.add_post(post(1))
    assert await storage.add_vote(1, 99, "🤖", at=1.0, is_bot=True) is False
    assert (await score_rows(storage, 1)).votes == ()
    async with storage.db.execute("SELECT is_bot FROM reaction_events") as cur:
        assert [r[0] for r in await cur.fetchall()] == [1]


async def test_reactions_on_other_messages_are_ignored(storage):
    """Only our own posts collect votes and replies."""
    assert await storage.add_vote(12345, 42, "❤️", at=1.0) is False
    assert await storage.add_reply(5, 12345, 42, at=1.0) is False


async def test_reply_stored_once(storage):
    """A reply to a post is stored once, however often the event arrives."""
    await storage.add_post(post(1))
    assert await storage.add_reply(500, 1, 42, at=1.0) is True
    assert await storage.add_reply(500, 1, 42, at=1.0) is False
    assert [r.member_id for r in (await score_rows(storage, 1)).replies] == [42]


async def test_reconcile_adds_missed_and_drops_stale(storage):
    """Catch-up makes stored votes equal what Discord shows now."""
    await storage.add_post(post(1))
    await storage.add_vote(1, 1, "❤️", at=1.0)
    await storage.add_vote(1, 2, "❤️", at=1.0)
    changed = await storage.reconcile_votes(1, [(2, "❤️"), (3, "👍")], at=5.0)
    assert changed == 2
    assert {(v.member_id, v.emoji) for v in (await score_rows(storage, 1)).votes} == {(2, "❤️"), (3, "👍")}
    assert await storage.reconcile_votes(1, [(2, "❤️"), (3, "👍")], at=6.0) == 0


async def test_reconcile_leaves_live_reactions_newer_than_its_view(storage):
    """Catch-up reads Discord's reactions over HTTP before its transaction: a member who reacted, or took a reaction
    back, while it was reading must not be undone by that older view."""
    await storage.add_post(post(1))
    await storage.add_vote(1, 1, "❤️", at=1.0)  # before the view: Discord's view says it was removed meanwhile
    await storage.add_vote(1, 2, "❤️", at=1.0)
    # the catch-up starts reading at t=10; then, live, member 3 reacts and member 2 takes theirs back
    await storage.add_vote(1, 3, "👍", at=11.0)
    await storage.remove_vote(1, 2, "❤️", at=12.0)
    view = [(2, "❤️")]  # what the fetch showed: member 2's heart, not member 3's thumbs-up yet
    await storage.reconcile_votes(1, view, at=13.0, seen_at=10.0)
    assert {(v.member_id, v.emoji) for v in (await score_rows(storage, 1)).votes} == {(3, "👍")}


async def test_post_records_window_and_marking(storage):
    """Records come oldest first within the window; trained posts can be excluded."""
    for i, at in enumerate([10.0, 20.0, 30.0], start=1):
        await storage.add_post(post(i, at=at))
    recs = await storage.post_records(created_before=25.0)
    assert [r.post.message_id for r in recs] == [1, 2]
    await mark_trained(storage, [recs[0].post.id], at=40.0, run_id=None)
    fresh = await storage.post_records(untrained_only=True)
    assert [r.post.message_id for r in fresh] == [2, 3]
    assert (await storage.post_records(limit=1))[0].post.message_id == 3


async def test_post_keeps_exact_token_ids(storage):
    """A post's sampled ids round-trip exactly."""
    await storage.add_post(post(1))
    p = await post_by_message(storage, 1)
    assert p.prompt_ids == (0,) and p.completion_ids == (5, 6)


async def test_one_active_story_per_channel(storage):
    """A second story in the same channel is refused until the first ends."""
    await storage.start_story(5, instruction="i", opening="o", started_by=1, at=1.0)
    with pytest.raises(StoryExists):
        await storage.start_story(5, instruction="i", opening="o", started_by=1, at=2.0)
    assert await storage.end_story(5, at=3.0)
    await storage.start_story(5, instruction="i", opening="o2", started_by=1, at=4.0)
    assert (await storage.active_story(5)).opening == "o2"


async def test_forget_member(storage):
    """A member's votes and replies can be deleted on request."""
    await storage.add_post(post(1))
    await storage.add_vote(1, 42, "❤️", at=1.0)
    await storage.add_reply(500, 1, 42, at=1.0)
    done = await storage.forget_member(42)
    assert done["votes"] == 1 and done["reaction events"] == 1 and done["replies"] == 1
    rec = await score_rows(storage, 1)
    assert rec.votes == () and rec.replies == ()


async def test_training_run_rows(storage):
    """Runs open as running and close with their outcome."""
    run = await storage.start_run("test", at=1.0)
    await storage.finish_run(run, status="done", at=2.0, adapter="v0001", accepted=True, metrics={"kl": 0.1})
    (r,) = await storage.runs()
    assert (r.status, r.adapter, r.accepted, r.metrics) == ("done", "v0001", True, {"kl": 0.1})


def test_schema_is_plain_sqlite(tmp_path):
    """The migration SQL is valid for the sqlite3 module too (no driver-specific syntax)."""
    from bot.storage import migrations as _migrations

    con = sqlite3.connect(tmp_path / "x.db")
    for _, sql in _migrations():
        con.executescript(sql)
    assert con.execute("SELECT COUNT(*) FROM posts").fetchone() == (0,)


async def test_concurrent_events_are_all_stored(storage):
    """Regression: concurrent gateway events on one connection used to interleave BEGINs and roll back each
    other's writes (the e2e burst lost all but one of 50 events)."""
    import asyncio

    await storage.add_post(post(1))
    await storage.add_post(post(2))
    adds = [storage.add_vote(m, u, "❤️", at=1.0) for m in (1, 2) for u in range(100)]
    replies = [storage.add_reply(1000 + u, 1, u, at=1.0) for u in range(50)]
    await asyncio.gather(*adds, *replies)
    removes = [storage.remove_vote(1, u, "❤️", at=2.0) for u in range(0, 100, 2)]
    await asyncio.gather(*removes, storage.add_post(post(3)))
    recs = {r.post.message_id: r for r in await storage.post_records()}
    assert len(recs[1].votes) == 50 and len(recs[2].votes) == 100 and len(recs[1].replies) == 50
    async with storage.db.execute("SELECT COUNT(*) FROM reaction_events") as cur:
        assert (await cur.fetchone())[0] == 250


async def test_runs_left_running_by_a_dead_process_are_failed(storage):
    """A worker killed mid-run leaves its row 'running'; the next run closes it as failed."""
    stale = await storage.start_run("nightly", at=1.0)
    assert await storage.fail_stale_runs(at=2.0) == 1
    (run,) = await storage.runs()
    assert run.id == stale and run.status == "failed" and "interrupted" in run.message


async def test_a_write_cancelled_at_begin_does_not_wedge_the_connection(tmp_path):
    """Cancel a transaction while BEGIN waits for the database lock: later writes work and nothing acked is lost."""
    import asyncio
    import sqlite3

    path = tmp_path / "k.db"
    async with Storage.open(path) as storage:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # hold the write lock so our BEGIN IMMEDIATE has to wait (busy_timeout)

        async def write() -> None:
            async with storage.transaction() as db:
                await db.execute("INSERT INTO training_runs (reason, status, started_at) VALUES ('x', 'done', 0)")

        task = asyncio.create_task(write())
        await asyncio.sleep(0.3)  # the task is now awaiting BEGIN on the connection's thread
        task.cancel()
        await asyncio.sleep(0.2)
        other.execute("ROLLBACK")
        other.close()
        with pytest.raises(asyncio.CancelledError):
            await task
        acked = await storage.add_post(NewPost(channel_id=1, text="kept", adapter="base", created_at=1.0, message_id=9))
        await storage.start_run("next", at=2.0)
        assert not storage.db.in_transaction
    async with Storage.open(path) as storage:
        post = await get_post(storage, acked)
        assert post is not None and post.text == "kept"
        assert [r.reason for r in await storage.runs()] == ["next"]  # the cancelled insert never landed


def test_migration_numbers_have_no_gaps():
    """The runner applies numbers above the stored version: a gap (0005 shipped before 0003) would skip one forever."""
    numbers = [n for n, _ in migrations()]
    assert numbers == list(range(1, len(numbers) + 1))


def test_every_migration_is_ported_to_postgresql():
    """Each numbered SQLite migration has its PostgreSQL port, under the same number and name
    (bot/storage/migrations/postgresql/, see README "PostgreSQL"): a schema change lands on both backends."""
    from importlib import resources

    folder = resources.files("bot.storage") / "migrations"

    def names(f):
        return sorted(e.name for e in f.iterdir() if e.name.endswith(".sql"))

    assert names(folder / "postgresql") == names(folder)
    assert [n for n, _ in migrations("postgresql")] == [n for n, _ in migrations()]


async def test_a_write_cancelled_while_waiting_for_a_lock_does_not_wedge_postgresql(postgres_server):
    """PostgreSQL: a transaction cancelled while its statement waits for another session's lock is rolled back
    whole (the statement runs to its end first, never cut off on the server), and the connection keeps working."""
    import asyncio

    import asyncpg

    url = postgres_server.new_database()
    async with Storage.open(url) as storage:
        other = await asyncpg.connect(url)
        blocker = other.transaction()
        await blocker.start()
        await other.execute("LOCK TABLE training_runs IN ACCESS EXCLUSIVE MODE")

        async def write() -> None:
            async with storage.transaction() as db:
                await db.execute("INSERT INTO training_runs (reason, status, started_at) VALUES ('x', 'done', 0)")

        task = asyncio.create_task(write())
        await asyncio.sleep(0.3)  # the INSERT now waits for the lock
        task.cancel()
        await asyncio.sleep(0.2)
        await blocker.rollback()
        await other.close()
        with pytest.raises(asyncio.CancelledError):
            await task
        acked = await storage.add_post(NewPost(channel_id=1, text="kept", adapter="base", created_at=1.0, message_id=9))
        await storage.start_run("next", at=2.0)
        assert not storage.db.in_transaction
    async with Storage.open(url) as storage:
        post = await get_post(storage, acked)
        assert post is not None and post.text == "kept"
        assert [r.reason for r in await storage.runs()] == ["next"]  # the cancelled insert never landed


async def test_migration_rewrites_animated_custom_emoji_keys(bare_database):
    """Votes stored as <a:name:id> before 0006 become <:name:id>, so their removals match; a duplicate collapses."""
    path = bare_database
    await migrate_to(path, 5)  # as if 0006 had not run yet
    db = await connect(path)
    await db.execute(
        "INSERT INTO posts (id, message_id, channel_id, kind, text, adapter, created_at) "
        "VALUES (1, 1, 1, 'post', 'x', 'base', 1.0)"
    )
    await db.executemany(
        "INSERT INTO votes (post_id, member_id, emoji, at) VALUES (1, ?, ?, 1.0)",
        [(1, "<a:kilroy:7>"), (2, "<a:kilroy:7>"), (2, "<:kilroy:7>")],
    )
    await db.close()
    async with Storage.open(path) as storage:
        rows = await storage.db.execute_fetchall("SELECT member_id, emoji FROM votes ORDER BY member_id")
    assert [tuple(r) for r in rows] == [(1, "<:kilroy:7>"), (2, "<:kilroy:7>")]
    assert len(list(migrations())) >= 6


async def test_migration_names_the_gate_verdict_accepted(bare_database):
    """training_runs.promoted held the gate's verdict, not whether the adapter served: 0007 renames it `accepted`,
    keeping every row's value."""
    path = bare_database
    await migrate_to(path, 6)  # a database as version 6 left it
    db = await connect(path)
    await db.execute(
        "INSERT INTO training_runs (reason, status, started_at, adapter, promoted, stage) "
        "VALUES ('nightly', 'done', 1.0, 'v0001', 1, 'kept')"
    )
    await db.close()
    async with Storage.open(path) as storage:
        (run,) = await storage.runs()
    assert run.accepted is True and run.stage == "kept"
