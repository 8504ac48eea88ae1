"""Operations reads agree with the pure scoring path, and the indexes the history needs exist."""

from __future__ import annotations

import time

from bot.scoring import ScoreFormula
from bot.stats import daily_scores, top_posts
from bot.storage import NewPost, Storage


async def test_stats_summary_matches_the_pure_path(tmp_path):
    formula = ScoreFormula(emoji_weights={"👎": -1.0, "❤️": 2.0})
    async with Storage.open(tmp_path / "k.db") as storage:
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
        summary = await storage.stats_summary(formula, since=since)
        records = await storage.post_records(created_after=since)
    assert summary.posts == len(records)
    expected_days = daily_scores(records, formula)
    assert [(d.day, d.adapter, d.posts) for d in summary.days] == [(d.day, d.adapter, d.posts) for d in expected_days]
    assert all(abs(a.mean_score - b.mean_score) < 1e-9 for a, b in zip(summary.days, expected_days, strict=True))
    expected = [(round(s, 9), p.id) for s, p in top_posts(records, formula, 5)]
    assert [(round(p.score, 9), p.id) for p in summary.top] == expected


async def test_per_member_lookups_are_indexed(tmp_path):
    """/forget-me deletes by member: every table it touches has an index on member_id (no full scans)."""
    async with Storage.open(tmp_path / "k.db") as storage:
        for table in ("votes", "reaction_events", "replies"):
            async with storage.db.execute(f"EXPLAIN QUERY PLAN DELETE FROM {table} WHERE member_id = 1") as cur:
                plan = " ".join(str(r[-1]) for r in await cur.fetchall())
            assert "USING INDEX" in plan or "USING COVERING INDEX" in plan, (table, plan)


async def test_write_check_and_audit_trail(tmp_path):
    async with Storage.open(tmp_path / "k.db") as storage:
        await storage.write_check(at=1.0)
        await storage.write_check(at=2.0)
        await storage.audit(actor="cli", action="rollback", detail="from v2", outcome="ok", at=3.0)
        assert (await storage.audit_trail())[0]["detail"] == "from v2"
        assert await storage.database_bytes() > 0
