"""Permission checks and reply helpers shared by the cogs (private: not loaded as an extension)."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.config import DiscordSettings


class NotAllowed(app_commands.CheckFailure):
    """The member lacks the role or permission a command needs."""


def _role_ids(user: discord.abc.User) -> set[int]:
    return {r.id for r in getattr(user, "roles", [])}


def is_moderator(interaction: discord.Interaction, settings: DiscordSettings) -> bool:
    """Manage Server permission, or a role in KILROY_MODERATOR_ROLE_IDS."""
    perms = getattr(interaction.user, "guild_permissions", None)
    if perms is not None and perms.manage_guild:
        return True
    return bool(_role_ids(interaction.user) & set(settings.moderator_role_ids))


async def is_operator(interaction: discord.Interaction, settings: DiscordSettings) -> bool:
    """A user in KILROY_OPERATOR_USER_IDS, a role in KILROY_OPERATOR_ROLE_IDS, or the application owner."""
    user = interaction.user
    if user.id in settings.operator_user_ids or _role_ids(user) & set(settings.operator_role_ids):
        return True
    client = interaction.client
    return isinstance(client, commands.Bot) and await client.is_owner(user)


async def say(
    interaction: discord.Interaction, content: str | None = None, *, ephemeral: bool = False, **kw: object
) -> None:
    """Answer an interaction whether or not it was deferred."""
    if interaction.response.is_done():
        await interaction.followup.send(content, ephemeral=ephemeral, **kw)  # type: ignore[arg-type]
    else:
        await interaction.response.send_message(content, ephemeral=ephemeral, **kw)  # type: ignore[arg-type]
