"""The privacy cog translates: /forget-me, /opt-in and /my-data answer privately with what the service did."""

from __future__ import annotations

import json

import discord

from bot.privacy.service import PrivacyService
from bot.storage import NewPost
from cogs.privacy import Privacy
from tests.support.discord_mocks import interaction, member, texts


async def test_forget_me_then_opt_in_answer_privately(storage, store):
    """/forget-me defers privately before touching the database and says what went; /opt-in says it lifted it."""
    await storage.add_post(NewPost(channel_id=500, text="hello", adapter="base", created_at=1.0, message_id=1))
    await storage.add_vote(1, 42, "❤️", at=2.0)
    cog = Privacy(privacy=PrivacyService(storage, retention_days=90, adapter_store=store))
    i = interaction(member(42))
    await cog.forget_me.callback(cog, i)
    assert i.response.defer.call_args.kwargs["ephemeral"] is True
    (answer,) = texts(i.followup.send)
    assert answer.startswith("Done: 1 votes") and i.followup.send.call_args.kwargs["ephemeral"] is True
    i = interaction(member(42))
    await cog.opt_in.callback(cog, i)
    assert texts(i.followup.send) == ["Welcome back: Kilroy records your reactions, replies and story lines again."]
    i = interaction(member(42))
    await cog.opt_in.callback(cog, i)
    assert texts(i.followup.send)[0].startswith("You had not opted out")


async def test_forget_me_with_nothing_held_says_so(storage):
    cog = Privacy(privacy=PrivacyService(storage, retention_days=90))
    i = interaction(member(42))
    await cog.forget_me.callback(cog, i)
    assert texts(i.followup.send)[0].startswith("Done: nothing was held about you.")


async def test_my_data_sends_the_file_privately(storage):
    await storage.add_post(NewPost(channel_id=500, text="hello", adapter="base", created_at=1.0, message_id=1))
    await storage.add_vote(1, 42, "❤️", at=2.0)
    cog = Privacy(privacy=PrivacyService(storage, retention_days=30))
    i = interaction(member(42))
    await cog.my_data.callback(cog, i)
    kwargs = i.followup.send.call_args.kwargs
    assert kwargs["ephemeral"] is True and isinstance(kwargs["file"], discord.File)
    assert "1 votes" in texts(i.followup.send)[0]
    data = json.loads(kwargs["file"].fp.read())
    assert data["member_id"] == "42" and data["retention_days"] == 30
