"""Trials persist: one running at a time, posts keep their arm, everything survives a reopen."""

import pytest

from bot.domain.scoring import Baseline
from bot.storage import NewPost, Storage, TrialActive
from bot.storage._conn import connect
from tests.support.storage import migrate_to, post_by_message


def _post(message_id: int, *, trial_id=None, arm=None, at: float = 100.0) -> NewPost:
    return NewPost(
        channel_id=1,
        text=f"p{message_id}",
        adapter="v1",
        created_at=at,
        message_id=message_id,
        trial_id=trial_id,
        arm=arm,
    )


async def _start(s: Storage, **over) -> int:
    args = dict(
        candidate="v2",
        incumbent="v1",
        run_id=None,
        share=0.5,
        alpha=0.05,
        max_posts=100,
        seed=7,
        baselines={1: Baseline(0.5, 1.2)},
        at=10.0,
    )
    args.update(over)
    return await s.start_trial(**args)


async def test_trial_and_arms_survive_a_reopen(database):
    """A running trial, its frozen baselines and each post's arm are there after a restart."""
    path = database
    async with Storage.open(path) as s:
        tid = await _start(s)
        await s.add_post(_post(1, trial_id=tid, arm="candidate"))
        await s.add_post(_post(2, trial_id=tid, arm="incumbent"))
        await s.add_post(_post(3))
    async with Storage.open(path) as s:
        trial = await s.active_trial()
        assert trial is not None and trial.id == tid and trial.candidate == "v2" and trial.seed == 7
        assert trial.baselines == {1: Baseline(0.5, 1.2)}
        assert await s.trial_post_counts(tid) == {"candidate": 1, "incumbent": 1}
        records = await s.post_records(trial_id=tid)
        assert [(r.post.message_id, r.post.arm) for r in records] == [(1, "candidate"), (2, "incumbent")]
        assert (await post_by_message(s, 3)).arm is None


async def test_only_one_trial_runs_and_a_verdict_is_final(storage):
    """A second trial is refused while one runs; ending twice keeps the first verdict."""
    tid = await _start(storage)
    with pytest.raises(TrialActive):
        await _start(storage)
    assert await storage.end_trial(tid, verdict="keep", decided_by="test", summary="worse", at=20.0)
    assert not await storage.end_trial(tid, verdict="promote", decided_by="test", summary="", at=21.0)
    ended = await storage.get_trial(tid)
    assert ended.verdict == "keep" and ended.ended_at == 20.0 and not ended.active
    assert await storage.active_trial() is None
    assert (await _start(storage)) != tid


async def test_trial_migration_applies_over_an_older_database(bare_database):
    """A database at schema 1 with posts gains the trial columns and keeps its posts."""
    path = bare_database
    await migrate_to(path, 1)
    db = await connect(path)
    await db.execute(
        "INSERT INTO posts (message_id, channel_id, kind, text, adapter, created_at) "
        "VALUES (5, 1, 'post', 'x', 'base', 1.0)"
    )
    await db.close()
    async with Storage.open(path) as s:
        assert await s.schema_version() >= 3
        old = await post_by_message(s, 5)
        assert old is not None and old.trial_id is None and old.arm is None


async def test_stats_summary_labels_trial_posts_by_arm(storage):
    """/stats' SQL summary gives an A/B trial's arms their own series, as tests.support.stats.daily_scores does."""
    from bot.domain.scoring import ScoreFormula
    from tests.support.stats import daily_scores

    tid = await _start(storage)
    for i, (adapter, arm) in enumerate([("v1", "incumbent"), ("v2", "candidate"), ("v1", None), ("v2", "candidate")]):
        await storage.add_post(
            NewPost(
                channel_id=1,
                guild_id=9,
                text="t",
                adapter=adapter,
                created_at=86400.0 * 3 + i,
                message_id=i + 1,
                trial_id=tid if arm else None,
                arm=arm,
            )
        )
        await storage.add_vote(i + 1, 77, "❤️", at=1.0)
    summary = await storage.stats_summary(
        created_after=0.0, guild_id=9, emoji_weights={}, default_weight=1.0, reply_weight=2.0
    )
    series = [(a, n) for _, a, _, n in summary.days]
    assert series == [("v1", 1), ("v1 (incumbent)", 1), ("v2 (candidate)", 2)]
    python = daily_scores(await storage.post_records(), ScoreFormula(emoji_weights={}))
    assert [(d.adapter, d.posts) for d in python] == series
