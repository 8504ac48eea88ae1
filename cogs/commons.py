"""/commons show|join|leave|default: a server admin decides whether the server's posts help train the commons."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.app.checks import NotAllowed, audit, is_moderator, is_operator, say
from bot.config.settings import Settings
from bot.domain.commons import JOIN, LEAVE, describe
from bot.storage import Storage

if TYPE_CHECKING:
    from bot.app.bot import KilroyBot

_CHOICES = {"join": JOIN, "leave": LEAVE, "default": None}


class Commons(commands.Cog):
    """Admins (Manage Server, or a KILROY_MODERATOR_ROLE_IDS role) and operators."""

    def __init__(self, *, settings: Settings, storage: Storage, bot: commands.Bot | None = None) -> None:
        self.settings, self.storage, self.bot = settings, storage, bot
        self.clock = time.time

    @app_commands.command(name="commons", description="Whether this server's posts help train the shared commons")
    @app_commands.guild_only()
    @app_commands.default_permissions(manage_guild=True)
    async def commons(
        self, interaction: discord.Interaction, action: Literal["show", "join", "leave", "default"] = "show"
    ) -> None:
        guild = interaction.guild_id
        if guild is None:
            raise NotAllowed("Use /commons in a server.")
        if action != "show":
            if not (
                is_moderator(interaction, self.settings.discord)
                or await is_operator(interaction, self.settings.discord)
            ):
                raise NotAllowed("Only this server's admins can change whether it joins the commons.")
            await self.storage.set_commons_choice(guild, _CHOICES[action], at=self.clock())
            if self.bot is not None:
                await audit(
                    self.bot, interaction, "/commons", action, storage=self.storage, settings=self.settings.discord
                )
        choice = (await self.storage.commons_choices()).get(guild)
        await say(interaction, describe(self.settings.training.commons, choice), ephemeral=True)


async def setup(bot: KilroyBot) -> None:
    await bot.add_cog(Commons(settings=bot.services.settings, storage=bot.services.storage, bot=bot))
