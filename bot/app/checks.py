"""Permission checks, the audit trail and reply helpers shared by the cogs (private: not loaded as an extension).

Every check looks at the member *in the server where the command runs*: `interaction.user` is then a `Member` of
that server, with that server's roles and permissions. Outside an allowed server (KILROY_GUILD_IDS) or in DMs
nobody is a moderator or an operator.
"""

from __future__ import annotations

import logging
import time

import discord
from discord import app_commands
from discord.ext import commands

from bot.config.settings import DiscordSettings
from bot.domain.safety import guild_allowed, neutralise_mentions
from bot.storage import Storage

log = logging.getLogger(__name__)

NO_MENTIONS = discord.AllowedMentions.none()


class NotAllowed(app_commands.CheckFailure):
    """The member lacks the role or permission a command needs."""


def _role_ids(user: discord.abc.User) -> set[int]:
    return {r.id for r in getattr(user, "roles", [])}


def _member_here(interaction: discord.Interaction, settings: DiscordSettings) -> discord.Member | None:
    """The invoking member, if the command runs inside an allowed server (never in DMs)."""
    user = interaction.user
    if not isinstance(user, discord.Member) or not guild_allowed(interaction.guild_id, settings.guild_ids):
        return None
    return user


def is_moderator(interaction: discord.Interaction, settings: DiscordSettings) -> bool:
    """Manage Server permission in this server, or one of its roles in KILROY_MODERATOR_ROLE_IDS."""
    user = _member_here(interaction, settings)
    if user is None:
        return False
    if user.guild_permissions.manage_guild:
        return True
    return bool(_role_ids(user) & set(settings.moderator_role_ids))


async def is_operator(interaction: discord.Interaction, settings: DiscordSettings) -> bool:
    """In an allowed server: a user in KILROY_OPERATOR_USER_IDS, a role of this server in KILROY_OPERATOR_ROLE_IDS,
    or the application owner."""
    user = _member_here(interaction, settings)
    if user is None:
        return False
    if user.id in settings.operator_user_ids or _role_ids(user) & set(settings.operator_role_ids):
        return True
    client = interaction.client
    return isinstance(client, commands.Bot) and await client.is_owner(user)


async def say(
    interaction: discord.Interaction, content: str | None = None, *, ephemeral: bool = False, **kw: object
) -> None:
    """Answer an interaction whether or not it was deferred; never pings anyone."""
    kw.setdefault("allowed_mentions", NO_MENTIONS)
    if interaction.response.is_done():
        await interaction.followup.send(content, ephemeral=ephemeral, **kw)  # type: ignore[arg-type]
    else:
        await interaction.response.send_message(content, ephemeral=ephemeral, **kw)  # type: ignore[arg-type]


def log_channel_for(bot: commands.Bot, settings: DiscordSettings, guild_id: int | None = None) -> object | None:
    """The log channel of a server: the one of KILROY_LOG_CHANNEL_IDS inside it, else KILROY_LOG_CHANNEL_ID."""
    if guild_id is not None:
        for channel_id in settings.log_channel_ids:
            channel = bot.get_channel(channel_id)
            if channel is not None and getattr(getattr(channel, "guild", None), "id", None) == guild_id:
                return channel
    return bot.get_channel(settings.log_channel_id) if settings.log_channel_id else None


async def to_log_channel(
    bot: commands.Bot, settings: DiscordSettings, text: str, *, guild_id: int | None = None
) -> None:
    """Post a line to the server's log channel (`log_channel_for`) if one is set and visible; never pings;
    failures are only logged."""
    channel = log_channel_for(bot, settings, guild_id)
    if channel is None:
        return
    try:
        await channel.send(text, allowed_mentions=NO_MENTIONS)  # type: ignore[attr-defined]
    except discord.HTTPException:
        log.warning("could not write to the log channel %s", getattr(channel, "id", "?"))


async def audit(
    bot: commands.Bot,
    interaction: discord.Interaction,
    action: str,
    detail: str = "",
    *,
    storage: Storage | None,
    settings: DiscordSettings,
) -> None:
    """Record who did what (database, when given) and say it in the log channel."""
    if storage is not None:
        await storage.add_audit(
            action, actor_id=interaction.user.id, guild_id=interaction.guild_id, detail=detail, at=time.time()
        )
    # the actor renders as a mention (no ping: NO_MENTIONS); the detail is neutralised like any echoed text
    line = f"Audit: <@{interaction.user.id}> ran {action}" + (f" ({neutralise_mentions(detail)})" if detail else "")
    await to_log_channel(bot, settings, line, guild_id=interaction.guild_id)
