"""/commons: anyone in a server sees whether it pools; only its admins change it; the choice is per server."""

from __future__ import annotations

import pytest

from bot.app.checks import NotAllowed
from cogs.commons import Commons
from tests.support.discord_mocks import interaction, member, texts


def _answer(i) -> str:
    return (texts(i.response.send_message) + texts(i.followup.send))[-1]


async def test_an_admin_leaves_and_rejoins_the_commons_for_their_server_only(make_settings, storage):
    cog = Commons(settings=make_settings(KILROY_COMMONS="opt-out"), storage=storage)
    i = interaction(member(1), guild_id=11)
    await cog.commons.callback(cog, i)
    assert "help train the commons" in _answer(i) and "KILROY_COMMONS=opt-out" in _answer(i)

    i = interaction(member(2, manage_guild=True), guild_id=11)
    await cog.commons.callback(cog, i, "leave")
    assert "not pooled" in _answer(i) and "its admin chose so" in _answer(i)
    assert await storage.commons_choices() == {11: "out"}

    i = interaction(member(2, manage_guild=True), guild_id=12)  # another server is not touched
    await cog.commons.callback(cog, i)
    assert "help train the commons" in _answer(i)

    i = interaction(member(2, manage_guild=True), guild_id=11)
    await cog.commons.callback(cog, i, "default")
    assert await storage.commons_choices() == {}


async def test_a_member_cannot_change_it_and_off_cannot_be_joined(make_settings, storage):
    cog = Commons(settings=make_settings(KILROY_COMMONS="opt-in"), storage=storage)
    with pytest.raises(NotAllowed):
        await cog.commons.callback(cog, interaction(member(1), guild_id=11), "join")
    assert await storage.commons_choices() == {}
    off = Commons(settings=make_settings(KILROY_COMMONS="off"), storage=storage)
    i = interaction(member(2, manage_guild=True), guild_id=11)
    await off.commons.callback(off, i, "join")
    assert "commons is off" in _answer(i)
