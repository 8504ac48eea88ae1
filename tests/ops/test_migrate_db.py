"""`kilroy migrate-db`: a SQLite install copied into PostgreSQL, every table's rows the same afterwards, the opt-outs
still honoured (the privacy key travels), a second run harmless, a foreign target refused."""

import random
import sqlite3
import time

import asyncpg
import pytest

from bot.cli.main import main
from bot.ops.migrate_db import MigrateError, migrate_db
from bot.storage import NewPost, Storage
from tests.storage.test_privacy import M, seed

POSTS = 20_000


def history(path, posts: int = POSTS, seed_: int = 3) -> None:
    """A year of posts with votes, reaction events and replies, written straight into SQLite (fast)."""
    rng = random.Random(seed_)
    now = time.time()
    con = sqlite3.connect(path)
    con.executemany(
        "INSERT INTO posts (id, message_id, channel_id, guild_id, kind, text, prompt_ids, completion_ids, adapter, "
        "params, created_at, trained_at) VALUES (?, ?, 1, 9, 'post', ?, '[1, 2]', '[3]', ?, '{}', ?, ?)",
        [
            (10 + i, 10_000 + i, f"post {i} ✨", rng.choice(["base", "v0001"]), now - rng.uniform(0, 365) * 86400,
             None if i % 3 else now)
            for i in range(posts)
        ],
    )  # fmt: skip
    votes = {(10 + i, 500 + m, rng.choice(["❤️", "👎", "<:kilroy:7>"])) for i in range(posts) for m in range(i % 4)}
    con.executemany("INSERT INTO votes (post_id, member_id, emoji, at) VALUES (?, ?, ?, ?)", [(*v, now) for v in votes])
    con.executemany(
        "INSERT INTO reaction_events (post_id, member_id, emoji, action, is_bot, at) VALUES (?, ?, ?, 'add', 0, ?)",
        [(*v, now) for v in votes],
    )
    con.executemany(
        "INSERT INTO replies (message_id, post_id, member_id, length, at) VALUES (?, ?, ?, 5, ?)",
        [(900_000 + i, 10 + i, 700 + i % 50, now) for i in range(0, posts, 7)],
    )
    con.commit()
    con.close()


def rows(con: sqlite3.Connection, table: str) -> list[tuple]:
    return con.execute(f"SELECT * FROM {table}").fetchall()


def numbers(row) -> tuple:
    """A row with its numbers as floats: SQLite hands back a REAL column's whole numbers as it stored them."""
    return tuple(float(v) if isinstance(v, int | float) else v for v in row)


async def make_install(tmp_path, posts: int):
    """A SQLite install with every kind of row, a forgotten member among them, and a history of `posts`."""
    path = tmp_path / "kilroy.db"
    async with Storage.open(path) as storage:
        await seed(storage)
        await storage.start_trial(candidate="v2", incumbent="v1", run_id=None, share=0.5, alpha=0.05, max_posts=10,
                                  seed=1, baselines={}, at=1.0)  # fmt: skip
        await storage.add_candidates(await storage.add_post(NewPost(1, "best of 3", "base", 1.0, message_id=77)),
                                     [_Candidate("a"), _Candidate("b")], chosen=1)  # fmt: skip
        await storage.write_check(at=1.0)
        await storage.forget_member(M, at=10.0)
    history(path, posts)
    return path


@pytest.fixture
async def install(tmp_path):
    """The 20k-post install."""
    return await make_install(tmp_path, POSTS)


@pytest.fixture
async def small_install(tmp_path):
    return await make_install(tmp_path, 300)


class _Candidate:
    def __init__(self, text: str) -> None:
        self.text, self.completion_ids, self.predicted, self.postable = text, (1, 2), 0.5, True


async def test_every_table_is_copied_and_verified_and_the_copy_serves(install, postgres_server):
    url = postgres_server.new_database(migrated=False)
    result = await migrate_db(install, url)
    assert not result.already and result.counts["posts"] == POSTS + 4 and result.counts["votes"] > POSTS
    src = sqlite3.connect(install)
    pg = await asyncpg.connect(url)
    try:
        rng = random.Random(1)
        for table, n in result.counts.items():
            assert (await pg.fetchval(f"SELECT COUNT(*) FROM {table}")) == n, table
            expected = [numbers(r) for r in rows(src, table)]
            got = {numbers(r) for r in await pg.fetch(f"SELECT * FROM {table}")}
            for row in rng.sample(expected, min(50, len(expected))):  # a random sample, every column
                assert row in got, (table, row)
    finally:
        await pg.close()
        src.close()
    async with Storage.open(url) as storage:  # the copy is a working database: keys, opt-outs, ids continue
        assert storage.is_opted_out(M)
        assert not await storage.add_vote(10_000, M, "❤️", at=1.0)
        assert await storage.add_vote(10_000, 12345, "❤️", at=1.0)
        new = await storage.add_post(NewPost(1, "after", "base", 2.0, message_id=5))
        assert new == POSTS + 10  # after the copied ids (10 .. POSTS + 9)
        assert await storage.start_run("next", at=3.0) > 1
        summary = await storage.stats_summary(created_after=0.0, guild_id=9, emoji_weights={"❤️": 2.0},
                                              default_weight=1.0, reply_weight=2.0)  # fmt: skip
        assert summary.posts == POSTS + 1  # server 9: the history and post 1, not the redacted story answers


async def test_a_second_run_is_harmless_and_a_foreign_target_is_refused(small_install, postgres_server, tmp_path):
    install = small_install
    url = postgres_server.new_database(migrated=False)
    await migrate_db(install, url)
    assert (await migrate_db(install, url)).already
    other = tmp_path / "other.db"
    async with Storage.open(other) as storage:
        await storage.add_post(NewPost(1, "someone else", "base", 1.0, message_id=1))
    with pytest.raises(MigrateError, match="is not empty"):
        await migrate_db(other, url)


def test_the_command_names_problems_without_the_password(make_settings, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KILROY_DATA_DIR", str(tmp_path / "data"))
    assert main(["migrate-db", "--to", "mysql://kilroy:hunter2@db/kilroy"]) == 2
    err = capsys.readouterr().err
    assert "not a PostgreSQL URL" in err and "hunter2" not in err
    assert main(["migrate-db", "--to", "postgresql://kilroy:hunter2@db/kilroy"]) == 2
    err = capsys.readouterr().err
    assert "no SQLite database" in err and "hunter2" not in err


def test_the_command_copies_and_says_what_it_did(small_install, postgres_server, tmp_path, capsys, monkeypatch):
    install = small_install
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KILROY_DB_PATH", str(install))
    monkeypatch.setenv("KILROY_DATA_DIR", str(tmp_path / "data"))
    url = postgres_server.new_database(migrated=False)
    assert main(["migrate-db", "--to", url]) == 0
    out = capsys.readouterr().out
    assert "every count and sampled row verified" in out and "KILROY_DATABASE_URL" in out
    assert main(["migrate-db", "--to", url]) == 0
    assert "nothing written" in capsys.readouterr().out
