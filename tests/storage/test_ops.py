"""Operations reads agree with the pure scoring path, and the indexes the history needs exist."""

from __future__ import annotations

import time

from bot.domain.scoring import ScoreFormula, score_post
from bot.storage import NewPost, Storage


async def test_scored_posts_match_the_pure_formula(database):
    """The dashboard's SQL scoring equals score_post (unique members, mean emoji weight, replies once)."""
    formula = ScoreFormula(emoji_weights={"👎": -1.0, "❤️": 2.0})
    async with Storage.open(database) as storage:
        now = time.time()
        for i in range(30):
            mid = 10_000 + i
            await storage.add_post(
                NewPost(
                    channel_id=1 + i % 2, text=f"p{i}", adapter=f"v{i % 3}", created_at=now - i * 20000, message_id=mid
                )
            )
            for m in range(i % 5):
                await storage.add_vote(mid, 500 + m, "❤️" if m % 2 else "👎", at=now)
                await storage.add_vote(mid, 500 + m, "🎉", at=now)
            if i % 4 == 0:
                await storage.add_reply(90_000 + i, mid, 777, at=now)
                await storage.add_reply(91_000 + i, mid, 777, at=now)  # one replier counts once
        since = now - 5 * 86400
        scored = await storage.scored_posts(formula, since=since, order="top", limit=None)
        records = await storage.post_records(created_after=since)
    expected = {r.post.id: score_post(r, formula) for r in records}
    assert {p.id: round(p.score, 9) for p in scored} == {k: round(v, 9) for k, v in expected.items()}
    assert [p.score for p in scored] == sorted((p.score for p in scored), reverse=True)


async def test_per_member_lookups_are_indexed(database):
    """/forget-me deletes by member: every table it touches has an index on member_id (no full scans)."""
    async with Storage.open(database) as storage:
        if storage.dialect.postgres:
            await storage.db.execute("SET enable_seqscan = off")  # empty tables: show the index the planner has
        for table in ("votes", "reaction_events", "replies"):
            explain = "EXPLAIN" if storage.dialect.postgres else "EXPLAIN QUERY PLAN"
            async with storage.db.execute(f"{explain} DELETE FROM {table} WHERE member_id = 1") as cur:
                plan = " ".join(str(r[-1]) for r in await cur.fetchall())
            assert "USING INDEX" in plan.upper() or "USING COVERING INDEX" in plan or "Index" in plan, (table, plan)


async def test_write_check_and_database_size(database):
    async with Storage.open(database) as storage:
        await storage.write_check(at=1.0)
        await storage.write_check(at=2.0)
        assert await storage.database_bytes() > 0
