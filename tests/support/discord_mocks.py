"""Spec'd fakes of the discord.py objects the cogs touch (typos fail; coroutines are AsyncMock)."""

from __future__ import annotations

import itertools
from unittest.mock import AsyncMock, MagicMock

import discord

_ids = itertools.count(10_000)


def member(user_id: int = 1, *, bot: bool = False, roles: tuple[int, ...] = (), manage_guild: bool = False):
    m = MagicMock(spec=discord.Member)
    m.id = user_id
    m.bot = bot
    m.roles = [MagicMock(spec=discord.Role, id=r) for r in roles]
    m.guild_permissions = discord.Permissions(manage_guild=manage_guild)
    return m


def interaction(user=None, *, channel_id: int = 500, guild_id: int = 1, owner: bool = False):
    """A deferred-aware fake Interaction: response.is_done() flips after defer/send_message."""
    i = MagicMock(spec=discord.Interaction)
    i.user = user or member()
    i.channel_id = channel_id
    i.guild_id = guild_id
    state = {"done": False}

    def _respond(kind: discord.InteractionResponseType):
        async def respond(*args, **kwargs):
            state["done"] = True
            i.response.type = kind

        return respond

    i.response = MagicMock(spec=discord.InteractionResponse)
    i.response.type = None
    i.response.is_done.side_effect = lambda: state["done"]
    i.response.defer = AsyncMock(side_effect=_respond(discord.InteractionResponseType.deferred_channel_message))
    i.response.send_message = AsyncMock(side_effect=_respond(discord.InteractionResponseType.channel_message))
    i.delete_original_response = AsyncMock()
    sent = MagicMock(spec=discord.WebhookMessage)
    sent.id = next(_ids)
    i.followup = MagicMock(spec=discord.Webhook)
    i.followup.send = AsyncMock(return_value=sent)
    i.edit_original_response = AsyncMock()
    i.client = MagicMock(spec=discord.ext.commands.Bot)
    i.client.is_owner = AsyncMock(return_value=owner)
    i.command = None
    return i


def texts(mock: AsyncMock) -> list[str]:
    """Every content string a mock was called with (positional or content=)."""
    out = []
    for call in mock.call_args_list:
        content = call.kwargs.get("content", call.args[0] if call.args else None)
        if content is not None:
            out.append(str(content))
    return out


def reaction_payload(
    message_id: int,
    user_id: int,
    emoji: str = "❤️",
    *,
    bot: bool = False,
    author_id: int | None = 999,
    event: str = "REACTION_ADD",
):
    p = MagicMock(spec=discord.RawReactionActionEvent)
    p.message_id, p.user_id, p.guild_id, p.channel_id = message_id, user_id, 1, 500
    p.emoji = discord.PartialEmoji(name=emoji)
    p.member = member(user_id, bot=bot) if event == "REACTION_ADD" else None
    p.message_author_id = author_id if event == "REACTION_ADD" else None
    p.event_type = event
    return p


def fake_bot(user_id: int = 999):
    bot = MagicMock(spec=discord.ext.commands.Bot)
    bot.user = MagicMock(spec=discord.ClientUser)
    bot.user.id = user_id
    bot.wait_until_ready = AsyncMock()
    bot.get_user = MagicMock(return_value=None)  # not in the cache, as for most members on a large server
    return bot
