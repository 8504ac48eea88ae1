"""Across shard processes nothing runs twice: a post channel in a server on another process's shard is skipped
(and not looked up again), catch-up reconciles only this process's servers, and the database-wide jobs (retention,
nightly training, the trial's decision) run only in the process holding shard 0."""

from __future__ import annotations

from unittest.mock import AsyncMock, MagicMock

import discord

from bot.privacy.service import PrivacyService
from bot.storage import NewPost
from cogs.engagement import Engagement
from cogs.posting import Posting
from cogs.privacy import Privacy
from cogs.training import Training
from tests.cogs.test_posting import ScriptedGenerator, channel, sent
from tests.cogs.test_training import FakeRunner
from tests.support.discord_mocks import fake_bot

SHARD0_GUILD, SHARD1_GUILD = 1000, 4195304  # (id >> 22) % 2: 0 and 1
SHARD1 = {"KILROY_SHARD_COUNT": "2", "KILROY_SHARD_IDS": "1"}


def in_guild(guild_id: int, message_id: int = 777):
    ch = channel(message_id=message_id)
    ch.guild = MagicMock(spec=discord.Guild, id=guild_id)
    return ch


async def test_a_channel_on_another_shard_is_skipped_and_not_looked_up_again(make_settings, storage):
    """The process holding shard 1 posts in its server's channel only; the other is fetched once, then skipped."""
    ours, theirs = in_guild(SHARD1_GUILD, 1), in_guild(SHARD0_GUILD, 2)
    bot = fake_bot()
    bot.get_channel = MagicMock(return_value=None)  # uncached: a server on another shard never reaches our cache
    bot.fetch_channel = AsyncMock(side_effect=lambda cid: {500: ours, 600: theirs}[cid])
    settings = make_settings(KILROY_POST_CHANNEL_IDS="500,600", KILROY_POST_INTERVAL_MINUTES="1", **SHARD1)
    cog = Posting(bot, settings=settings, storage=storage, generator=ScriptedGenerator(["a post"] * 8))
    assert await cog.post_to(600) is None and sent(theirs) == []
    assert await cog.post_to(600) is None
    assert [c.args for c in bot.fetch_channel.await_args_list] == [(600,)]  # looked up once
    assert await cog.post_to(500) is not None and sent(ours) == ["a post"]


async def test_only_the_shard_0_process_decides_the_trial(make_settings, storage):
    for env, checks in (({"KILROY_SHARD_COUNT": "2", "KILROY_SHARD_IDS": "0"}, 1), (SHARD1, 0)):
        trials = MagicMock()
        trials.check = AsyncMock()
        settings = make_settings(**env)  # no post channels: a round only checks the trial
        cog = Posting(fake_bot(), settings=settings, storage=storage, generator=ScriptedGenerator([]), trials=trials)
        await cog.post_everywhere()
        assert trials.check.await_count == checks


async def test_catch_up_reconciles_only_the_servers_of_our_shards(make_settings, storage):
    for mid, guild in ((1, SHARD0_GUILD), (2, SHARD1_GUILD)):
        await storage.add_post(
            NewPost(channel_id=500, guild_id=guild, text="hi", adapter="base", created_at=1000.0, message_id=mid)
        )
    message = MagicMock(spec=discord.Message)
    message.reactions = []
    ch = MagicMock(spec=discord.TextChannel)
    ch.fetch_message = AsyncMock(return_value=message)
    bot = fake_bot()
    bot.get_channel = MagicMock(return_value=ch)
    settings = make_settings(KILROY_SETTLE_HOURS="1", **SHARD1)
    cog = Engagement(bot, settings=settings, storage=storage, clock=lambda: 2000.0)
    await cog.catch_up()
    assert [c.args for c in ch.fetch_message.await_args_list] == [(2,)]


async def test_on_shard_ready_catches_up_again(make_settings, storage):
    """With several shards one shard's new session fires only shard_ready: it must catch up too."""
    cog = Engagement(fake_bot(), settings=make_settings(), storage=storage)
    cog.catch_up = AsyncMock(return_value=0)
    await cog.on_shard_ready(1)
    await cog._catchup
    assert cog.catch_up.await_count == 1


async def test_retention_runs_only_where_the_database_jobs_run(storage):
    for database_jobs in (True, False):
        cog = Privacy(privacy=PrivacyService(storage, retention_days=90), database_jobs=database_jobs)
        cog.privacy.run_retention = AsyncMock(return_value={})
        await cog.cog_load()
        try:
            assert cog.retention.is_running() is database_jobs
        finally:
            await cog.cog_unload()


async def test_nightly_training_is_scheduled_only_in_the_shard_0_process(make_settings):
    for env, scheduled in (({}, True), ({"KILROY_SHARD_COUNT": "2", "KILROY_SHARD_IDS": "0"}, True), (SHARD1, False)):
        cog = Training(fake_bot(), settings=make_settings(**env), runner=FakeRunner())
        await cog.cog_load()
        try:
            assert cog.nightly.is_running() is scheduled, env
        finally:
            await cog.cog_unload()
