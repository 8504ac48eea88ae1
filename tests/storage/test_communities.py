"""Migration 0009, 0010 and the per-community queries (issue 24), on both backends."""

from bot.domain.records import NewPost
from bot.storage import Storage
from bot.storage._conn import connect
from tests.support.storage import migrate_to


def _post(mid, guild, adapter="v0001", at=1.0):
    return NewPost(channel_id=1, guild_id=guild, text="t", adapter=adapter, created_at=at, message_id=mid)


async def test_migration_names_each_post_adapter_by_its_community_and_closes_old_state(bare_database):
    path = bare_database
    await migrate_to(path, 8)  # a database as version 8 left it
    db = await connect(path)
    await db.executemany(
        "INSERT INTO posts (message_id, channel_id, guild_id, kind, text, adapter, created_at) "
        "VALUES (?, 1, ?, 'post', 't', ?, 1.0)",
        [(1, 7, "v0002"), (2, 8, "base"), (3, None, "v0001")],
    )
    await db.execute(
        "INSERT INTO training_runs (reason, status, started_at, adapter, accepted, stage) "
        "VALUES ('nightly', 'done', 1.0, 'v0002', 1, 'marked')"
    )
    await db.execute(
        "INSERT INTO trials (candidate, incumbent, share, alpha, max_posts, seed, started_at) "
        "VALUES ('v0002', 'v0001', 0.5, 0.05, 100, 1, 1.0)"
    )
    await db.close()
    async with Storage.open(path) as storage:
        adapters = await storage.db.execute_fetchall("SELECT adapter FROM posts ORDER BY message_id")
        assert [a for (a,) in adapters] == ["g7/v0002", "base", "commons/v0001"]
        (run,) = await storage.runs()
        assert run.community == "commons"  # its promotion finishes in the commons, which holds the flat versions
        assert await storage.active_trial() is None
        # one running trial per community now
        for community in ("g7", "g8"):
            await storage.start_trial(
                candidate=f"{community}/v0002",
                incumbent="base",
                run_id=None,
                share=0.5,
                alpha=0.05,
                max_posts=10,
                seed=1,
                baselines={},
                at=2.0,
                community=community,
            )
        assert (await storage.active_trial("g7")).candidate == "g7/v0002"
        assert (await storage.active_trial("g8")).community == "g8"
        assert [t.community for t in await storage.trials(community="g8")] == ["g8"]


async def test_runs_and_staleness_per_community(database):
    async with Storage.open(database) as storage:
        a = await storage.start_run("nightly", at=1.0, community="g1")
        await storage.start_run("nightly", at=1.0, community="g2")
        assert [r.id for r in await storage.runs(community="g1")] == [a]
        for i in range(3):
            await storage.add_post(_post(10 + i, 1, at=float(i)))
        await storage.add_post(_post(20, 2, at=1.0))
        await storage.add_post(_post(21, 2, at=100.0))  # not settled yet
        assert await storage.guilds_with_posts() == [1, 2]
        assert await storage.untrained_settled_by_guild(created_before=50.0) == {1: 3, 2: 1}


async def test_commons_choices_and_settled_counts_per_server(database):
    async with Storage.open(database) as storage:
        assert await storage.commons_choices() == {}
        await storage.set_commons_choice(1, "out", at=1.0)
        await storage.set_commons_choice(2, "in", at=1.0)
        await storage.set_commons_choice(1, "in", at=2.0)  # changed: one row per server
        assert await storage.commons_choices() == {1: "in", 2: "in"}
        await storage.set_commons_choice(2, None, at=3.0)
        assert await storage.commons_choices() == {1: "in"}
        await storage.add_post(_post(10, 1, at=1.0))
        await storage.add_post(_post(11, 1, at=100.0))
        assert await storage.settled_by_guild(created_before=50.0) == {1: 1}
