"""Forgetting holds against every write path: `forget_member` racing a live vote, a catch-up, a reply, a story line,
a trial decision or an audit row, 200 times each (50 on PostgreSQL), leaves nothing of the member (issue 23, items 3
and 4).

Each round uses a new member, runs the write and the forget concurrently in a varying order and offset, then asks
one query over every text column of every table for the member's id, label or words.
"""

from __future__ import annotations

import asyncio
import random
from unittest.mock import Mock

import pytest

from bot.storage import NewPost, Storage
from bot.trials.service import TrialService

ROUNDS = 200
PG_ROUNDS = 50  # PostgreSQL: the same code paths; each round costs server round trips, so fewer of them
BASE_ID = 515151515151515000  # members BASE_ID + round: distinctive, a scan cannot hit them by chance


async def holding(storage: Storage, needles: list[str]) -> list[str]:
    """Those of `needles` found in any column of any row of any table (every value read back as text)."""
    texts: list[str] = []
    if storage.dialect.postgres:
        tables_sql = "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
    else:
        tables_sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
    async with storage.db.execute(tables_sql) as cur:
        tables = [r[0] for r in await cur.fetchall()]
    for table in tables:
        async with storage.db.execute(f"SELECT * FROM {table}") as cur:
            texts += [str(v) for row in await cur.fetchall() for v in row if v is not None]
    blob = "\n".join(texts)
    return [n for n in needles if n in blob]


def post(message_id: int) -> NewPost:
    return NewPost(channel_id=1, guild_id=9, text=f"post {message_id}", adapter="base", created_at=1.0,
                   message_id=message_id)  # fmt: skip


async def race(write, forget, rnd: random.Random) -> None:
    """Run both, the write first or second, with a few loop turns between their starts."""

    async def later(fn, turns: int):
        for _ in range(turns):
            await asyncio.sleep(0)
        return await fn()

    first, second = (write, forget) if rnd.random() < 0.5 else (forget, write)
    await asyncio.gather(later(first, 0), later(second, rnd.randrange(4)), return_exceptions=False)


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request):
    # SQLite in memory: fast; the WAL after a forget has its own test
    target = request.getfixturevalue("postgres_server").new_database() if request.param == "postgresql" else ":memory:"
    async with Storage.open(target) as storage:
        await storage.add_post(post(1))
        yield storage


async def check_rounds(storage: Storage, rounds: list[tuple[int, str]]) -> None:
    """No member of any round is held (id, label or words), and each is opted out. Checked once at the end: a
    later round touches only its own member, so a row left by any round is still there."""
    needles = [n for m, words in rounds for n in (str(m), storage.member_label(m), words) if n]
    assert await holding(storage, needles) == []
    assert all(storage.is_opted_out(m) for m, _ in rounds)


@pytest.mark.parametrize("path", ["live vote", "catch-up", "reply", "story line", "story start", "audit"])
async def test_forget_racing_a_write_path_leaves_nothing(db, path):
    """Regression (issue 23, item 3): reconcile_votes checked the opt-out before waiting for the write lock, so a
    forget that committed in between was missed and the vote written back; story lines never checked it."""
    rnd = random.Random(path)
    story = await db.start_story(5, instruction="i", opening="o", started_by=None, at=1.0)
    rounds = []
    for i in range(PG_ROUNDS if db.dialect.postgres else ROUNDS):
        m = BASE_ID + i
        words = f"secret words {m}"
        writes = {
            "live vote": lambda m=m: db.add_vote(1, m, "❤️", at=2.0),
            "catch-up": lambda m=m: db.reconcile_votes(1, [(m, "❤️"), (7, "👍")], at=2.0),
            "reply": lambda m=m, i=i: db.add_reply(10_000 + i, 1, m, at=2.0, length=3),
            "story line": lambda m=m, w=words, i=i: db.add_story_turn(story, human_text=w, member_id=m, at=2.0,
                answer=NewPost(channel_id=5, text="an answer", adapter="base", created_at=2.0,
                               message_id=50_000 + i, kind="story", prompt=w)),
            "story start": lambda m=m, w=words, i=i: db.start_story(100 + i, instruction="i", opening=w,
                                                                    started_by=m, at=2.0),
            "audit": lambda m=m: db.add_audit("/retrain", actor_id=m, guild_id=9, detail=f"by {m}", at=2.0),
        }  # fmt: skip
        await race(writes[path], lambda m=m: db.forget_member(m, at=3.0), rnd)
        rounds.append((m, words))
    assert await holding(db, ["post 1"]) == ["post 1"]  # the scan does find what is there
    await check_rounds(db, rounds)


async def test_forget_racing_a_trial_decision_leaves_nothing(db, make_settings, caplog):
    """Regression (issue 23, item 4): `/adapter trial stop` stored decided_by = 'user:<id>', which forget left, and
    the trial service wrote the id to the log."""
    caplog.set_level("INFO", logger="bot.trials.service")
    service = TrialService(db, adapters=Mock(), generator=Mock(), settings=make_settings())
    rnd = random.Random(4)
    rounds = []
    for i in range(PG_ROUNDS if db.dialect.postgres else ROUNDS):
        m = BASE_ID + i
        await db.start_trial(candidate="v0002", incumbent="v0001", run_id=None, share=0.5, alpha=0.05,
                             max_posts=100, seed=1, baselines={}, at=1.0)  # fmt: skip
        await race(lambda m=m: service.stop(f"user:{m}"), lambda m=m: db.forget_member(m, at=3.0), rnd)
        rounds.append((m, ""))
    await check_rounds(db, rounds)
    assert "trial #" in caplog.text and str(BASE_ID)[:12] not in caplog.text
