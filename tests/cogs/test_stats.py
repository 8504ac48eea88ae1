import time

from bot.domain.scoring import ScoreFormula
from bot.storage import NewPost
from cogs.stats import Stats
from tests.support.discord_mocks import interaction, texts
from tests.support.stats import daily_scores, top_posts


async def seed(storage):
    now = time.time()
    for i, (adapter, likes) in enumerate([("base", 1), ("base", 3), ("v0001", 5), ("v0001", 0)]):
        await storage.add_post(
            NewPost(
                channel_id=1,
                guild_id=9,
                text=f"post {i}",
                adapter=adapter,
                created_at=now - 86400 * (1 - i // 2),
                message_id=100 + i,
            )
        )
        for m in range(likes):
            await storage.add_vote(100 + i, m, "❤️", at=now)


async def test_daily_scores_and_top_posts(storage):
    await seed(storage)
    records = await storage.post_records()
    days = daily_scores(records, ScoreFormula())
    assert [(d.adapter, d.mean_score, d.posts) for d in days] == [("base", 2.0, 2), ("v0001", 2.5, 2)]
    assert [p.text for _, p in top_posts(records, ScoreFormula(), 2)] == ["post 2", "post 1"]


async def test_stats_command_sends_plot_and_top_posts(storage, make_settings):
    await seed(storage)
    cog = Stats(settings=make_settings(), storage=storage)
    i = interaction(guild_id=9)
    await cog.stats.callback(cog, i, 14)
    assert i.response.defer.called
    (text,) = texts(i.followup.send)
    assert "4 posts" in text and "post 2" in text and "https://discord.com/channels/9/1/102" in text
    assert i.followup.send.call_args.kwargs["file"].filename == "stats.png"


async def test_stats_without_posts(storage, make_settings):
    cog = Stats(settings=make_settings(), storage=storage)
    i = interaction()
    await cog.stats.callback(cog, i, 7)
    assert "No posts" in texts(i.followup.send)[0]


async def test_stats_are_scoped_to_the_server(storage, make_settings):
    """Another server's /stats never shows this server's posts."""
    await seed(storage)
    cog = Stats(settings=make_settings(), storage=storage)
    i = interaction(guild_id=10)
    await cog.stats.callback(cog, i, 14)
    (text,) = texts(i.followup.send)
    assert "No posts" in text and "post 2" not in text


async def test_sql_summary_matches_the_python_scoring(storage):
    """stats_summary (SQL) gives the same daily means and top posts as tests.support.stats on the same records."""
    import random

    from bot.domain.scoring import ScoreFormula

    rng = random.Random(0)
    now = time.time()
    for i in range(60):
        await storage.add_post(
            NewPost(
                channel_id=1,
                guild_id=9,
                text=f"p{i}",
                adapter=rng.choice(["base", "v1"]),
                created_at=now - rng.uniform(0, 5) * 86400,
                message_id=1000 + i,
            )
        )
        for m in range(rng.randint(0, 6)):
            for emoji in rng.sample(["❤️", "👎", "🎉"], rng.randint(1, 2)):
                await storage.add_vote(1000 + i, m, emoji, at=now)
        for m in range(rng.randint(0, 2)):
            await storage.add_reply(50_000 + i * 10 + m, 1000 + i, m % 2, at=now)
    formula = ScoreFormula(emoji_weights={"👎": -1.0, "🎉": 3.0}, default_emoji_weight=1.0, reply_weight=2.0)
    records = await storage.post_records(created_after=now - 10 * 86400)
    summary = await storage.stats_summary(
        created_after=now - 10 * 86400,
        guild_id=9,
        emoji_weights=formula.emoji_weights,
        default_weight=1.0,
        reply_weight=2.0,
    )
    expected = daily_scores(records, formula)
    assert [(d, a, n) for d, a, _, n in summary.days] == [(d.day, d.adapter, d.posts) for d in expected]
    assert all(abs(m - d.mean_score) < 1e-9 for (_, _, m, _), d in zip(summary.days, expected, strict=True))
    assert [(round(s, 9), p.id) for s, p in summary.top] == [
        (round(s, 9), p.id) for s, p in top_posts(records, formula, 5)
    ]
    assert summary.posts == 60
