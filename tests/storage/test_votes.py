"""The group-commit vote writer: batched events answer and end exactly as if they were applied one by one."""

import asyncio
import random

import pytest

from bot.storage import NewPost, Storage
from bot.storage._conn import DatabaseError

OURS = (1, 2)  # message ids of our posts; 3 is someone else's message
M, OTHER = 42, 43


async def add_posts(storage: Storage) -> None:
    for mid in OURS:
        await storage.add_post(
            NewPost(channel_id=1, text=f"post {mid}", adapter="base", created_at=1.0, message_id=mid)
        )


async def call(storage: Storage, op: tuple) -> bool:
    message_id, member, emoji, action, is_bot, at = op
    if action == "add":
        return await storage.add_vote(message_id, member, emoji, at=at, is_bot=is_bot)
    return await storage.remove_vote(message_id, member, emoji, at=at)


def replay(ops: list[tuple]) -> tuple[list[bool], dict[tuple, float]]:
    """The one-by-one semantics in plain Python: each op's answer, and the final votes with their times."""
    votes: dict[tuple, float] = {}
    answers = []
    for message_id, member, emoji, action, is_bot, at in ops:
        key = (message_id, member, emoji)
        if message_id not in OURS or (action == "add" and is_bot):
            answers.append(False)
        elif action == "add":
            answers.append(key not in votes)
            votes.setdefault(key, at)
        else:
            answers.append(votes.pop(key, None) is not None)
    return answers, votes


async def stored_votes(storage: Storage) -> dict[tuple, float]:
    rows = await storage.db.execute_fetchall(
        "SELECT p.message_id, v.member_id, v.emoji, v.at FROM votes v JOIN posts p ON p.id = v.post_id"
    )
    return {(m, u, e): at for m, u, e, at in rows}


async def stored_events(storage: Storage) -> list[tuple]:
    rows = await storage.db.execute_fetchall(
        "SELECT p.message_id, e.member_id, e.emoji, e.action, e.is_bot, e.at FROM reaction_events e "
        "JOIN posts p ON p.id = e.post_id ORDER BY e.id"
    )
    return [(m, u, e, a, bool(b), at) for m, u, e, a, b, at in rows]


async def count_begins(storage: Storage) -> list[str]:
    """Every transaction the storage opens from now on (either backend) appends 'BEGIN'."""
    statements: list[str] = []
    begin = storage.db.begin

    async def counted() -> None:
        statements.append("BEGIN")
        await begin()

    storage.db.begin = counted
    return statements


async def test_a_concurrent_burst_ends_as_the_sequential_replay(storage):
    """2,000 concurrent adds and removes (repeats, bots, a foreign message) answer and end as if applied in order."""
    await add_posts(storage)
    rng = random.Random(7)
    ops = [
        (rng.choice((1, 2, 2, 3)), rng.randrange(12), rng.choice("ab"), rng.choice(("add", "add", "remove")), False, i)
        for i in range(2000)
    ]
    ops = [(m, u, e, a, a == "add" and u == 0, float(at)) for m, u, e, a, _, at in ops]  # member 0 is a bot
    statements = await count_begins(storage)

    answers = await asyncio.gather(*(call(storage, op) for op in ops))

    expected_answers, expected_votes = replay(ops)
    assert answers == expected_answers
    assert await stored_votes(storage) == expected_votes
    assert await stored_events(storage) == [op for op in ops if op[0] in OURS]
    assert statements.count("BEGIN") <= 6  # group commit: a few batches, not one transaction an event


async def test_add_remove_add_in_one_batch_keeps_the_vote_with_the_last_adds_time(storage):
    """add, remove, add of one vote in one batch ends with the vote, timed by the add that created it."""
    await add_posts(storage)
    await storage.add_vote(1, M, "❤️", at=1.0)
    statements = await count_begins(storage)
    answers = await asyncio.gather(
        storage.remove_vote(1, M, "❤️", at=2.0),
        storage.add_vote(1, M, "❤️", at=3.0),
        storage.add_vote(1, M, "❤️", at=4.0),
        storage.remove_vote(1, OTHER, "❤️", at=5.0),  # never added
        storage.add_vote(1, OTHER, "👍", at=6.0),
        storage.remove_vote(1, OTHER, "👍", at=7.0),
    )
    assert answers == [True, True, False, False, True, True]
    assert statements.count("BEGIN") == 1
    assert await stored_votes(storage) == {(1, M, "❤️"): 3.0}


async def test_bots_foreign_messages_and_opted_out_members_in_one_batch(storage):
    """In one batch: a bot's add is logged, not a vote; a foreign message is ignored; an opted-out member is skipped."""
    await add_posts(storage)
    await storage.forget_member(M)
    answers = await asyncio.gather(
        storage.add_vote(1, 99, "🤖", at=1.0, is_bot=True),
        storage.add_vote(3, OTHER, "❤️", at=2.0),
        storage.remove_vote(3, OTHER, "❤️", at=3.0),
        storage.add_vote(1, M, "❤️", at=4.0),
        storage.remove_vote(1, M, "❤️", at=5.0),
        storage.add_vote(2, OTHER, "❤️", at=6.0),
    )
    assert answers == [False, False, False, False, False, True]
    assert await stored_votes(storage) == {(2, OTHER, "❤️"): 6.0}
    assert await stored_events(storage) == [(1, 99, "🤖", "add", True, 1.0), (2, OTHER, "❤️", "add", False, 6.0)]


async def test_a_forget_me_landing_after_the_events_were_queued_still_wins(storage):
    """Events queued before a /forget-me but written after it leave nothing of the member (checked under the lock)."""
    await add_posts(storage)
    async with storage._write:  # hold the writer back so the forget-me takes the lock first
        forget = asyncio.create_task(storage.forget_member(M))
        await asyncio.sleep(0)
        burst = asyncio.gather(storage.add_vote(1, M, "❤️", at=1.0), storage.add_vote(1, OTHER, "❤️", at=1.0))
        for _ in range(5):
            await asyncio.sleep(0)
    await forget
    assert await burst == [False, True]
    assert await stored_votes(storage) == {(1, OTHER, "❤️"): 1.0}
    assert [e[1] for e in await stored_events(storage)] == [OTHER]


async def test_a_forget_me_racing_a_burst_leaves_none_of_the_members_rows(storage):
    """However a /forget-me interleaves with a burst of the member's reactions, none of their rows remain."""
    await add_posts(storage)
    ops = [
        (1 + i % 2, M if i % 3 else OTHER, "ab"[i % 2], "add" if i % 5 else "remove", False, float(i))
        for i in range(600)
    ]
    calls = (
        [call(storage, op) for op in ops[:300]] + [storage.forget_member(M)] + [call(storage, op) for op in ops[300:]]
    )
    await asyncio.gather(*calls)
    for table in ("votes", "reaction_events"):
        rows = await storage.db.execute_fetchall(f"SELECT COUNT(*) FROM {table} WHERE member_id = ?", (M,))
        assert next(iter(rows))[0] == 0
    assert await stored_votes(storage)  # the other member's votes are kept


async def test_a_failing_batch_raises_in_its_callers_and_the_next_batch_works(storage):
    """A batch that fails is rolled back whole, every caller gets the error, and later events are written."""
    await add_posts(storage)
    if storage.dialect.postgres:
        await storage.db.execute(
            "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS "
            "'BEGIN IF NEW.emoji = ''boom'' THEN RAISE EXCEPTION ''boom''; END IF; RETURN NEW; END'"
        )
        await storage.db.execute(
            "CREATE TRIGGER boom BEFORE INSERT ON reaction_events FOR EACH ROW EXECUTE FUNCTION boom()"
        )
    else:
        await storage.db.execute(
            "CREATE TRIGGER boom BEFORE INSERT ON reaction_events WHEN NEW.emoji = 'boom' "
            "BEGIN SELECT RAISE(ABORT, 'boom'); END"
        )
    answers = await asyncio.gather(
        storage.add_vote(1, M, "❤️", at=1.0), storage.add_vote(1, OTHER, "boom", at=2.0), return_exceptions=True
    )
    assert all(isinstance(a, DatabaseError) for a in answers)
    assert await stored_votes(storage) == {}
    assert await storage.add_vote(1, M, "❤️", at=3.0) is True
    assert await stored_votes(storage) == {(1, M, "❤️"): 3.0}


async def test_a_cancelled_caller_still_has_its_event_written(storage):
    """Cancelling a caller after it queued its event neither loses nor corrupts the event."""
    await add_posts(storage)
    task = asyncio.create_task(storage.add_vote(1, M, "❤️", at=1.0))
    await asyncio.sleep(0)  # queued
    task.cancel()
    assert await storage.add_vote(1, M, "❤️", at=2.0) is False  # written after the cancelled one, in order
    assert await stored_votes(storage) == {(1, M, "❤️"): 1.0}


async def test_closing_storage_writes_the_queued_events(database):
    """Storage closing with events queued writes them first; after closing, a new event fails loudly."""
    path = database
    async with Storage.open(path) as storage:
        await add_posts(storage)
        tasks = [asyncio.create_task(storage.add_vote(1, u, "❤️", at=1.0)) for u in range(1000)]
        await asyncio.sleep(0)  # all queued; the storage closes before the writer has run
    assert await asyncio.wait_for(asyncio.gather(*tasks), 10) == [True] * 1000
    with pytest.raises(RuntimeError, match="closed"):
        await storage.add_vote(1, M, "❤️", at=2.0)
    async with Storage.open(path) as storage:
        assert len(await stored_votes(storage)) == 1000


@pytest.mark.parametrize("steps", [1, 5], ids=["before-it-ran", "waiting-for-the-lock"])
async def test_a_cancelled_writer_fails_its_callers_and_is_restarted(storage, steps):
    """If the writer task is cancelled, waiting callers get an error rather than hang, and a new writer serves."""
    await add_posts(storage)
    async with storage._write:
        waiting = asyncio.create_task(storage.add_vote(1, M, "❤️", at=1.0))
        for _ in range(steps):
            await asyncio.sleep(0)
        storage._vote_writer.cancel()
        with pytest.raises(RuntimeError, match="stopped"):
            await asyncio.wait_for(waiting, 5)
    assert await storage.add_vote(1, M, "❤️", at=2.0) is True
