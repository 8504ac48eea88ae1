"""/forget-me, /opt-in and /my-data for every member, and the daily retention schedule; the privacy service does the
work (bot/privacy/service.py)."""

from __future__ import annotations

import io
import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands, tasks

from bot.app.checks import say
from bot.privacy.service import Forgotten, PrivacyService

if TYPE_CHECKING:
    from bot.app.bot import KilroyBot

log = logging.getLogger(__name__)


def forget_text(forgotten: Forgotten) -> str:
    """The truthful answer to /forget-me: what was deleted or redacted, kind by kind."""
    parts = [f"{n} {kind}" for kind, n in forgotten.deleted.items() if n]
    if forgotten.scrubbed:
        parts.append(f"{forgotten.scrubbed} adapter metadata file(s)")
    what = ", ".join(parts) if parts else "nothing was held about you"
    return (
        f"Done: {what}. Your story lines and openings are replaced by a removal note, prompts that held them are "
        "blanked and never trained on. From now on Kilroy records nothing of yours (reactions, replies, story lines); "
        "`/opt-in` undoes that. Adapters trained before now are not retrained."
    )


class Privacy(commands.Cog):
    """What Kilroy holds about a member, how to see it, and how to make it forget."""

    def __init__(self, *, privacy: PrivacyService, database_jobs: bool = True) -> None:
        self.privacy = privacy
        self.database_jobs = database_jobs  # False in a shard process not holding shard 0 (bot/domain/shards.py)
        self.retention = tasks.loop(hours=24)(self.run_retention)

    async def cog_load(self) -> None:
        if self.database_jobs:  # retention prunes and VACUUMs the whole database: one process runs it
            self.retention.start()

    async def cog_unload(self) -> None:
        self.retention.cancel()

    @app_commands.command(name="forget-me", description="Delete everything Kilroy holds about you and stop recording")
    async def forget_me(self, interaction: discord.Interaction) -> None:
        # the database may be busy (a VACUUM after retention): answer "thinking" privately first, so the member
        # always hears back, within Discord's 3 s
        await interaction.response.defer(ephemeral=True, thinking=True)
        forgotten = await self.privacy.forget(interaction.user.id)
        await say(interaction, forget_text(forgotten), ephemeral=True)

    @app_commands.command(name="opt-in", description="Let Kilroy record your reactions, replies and story lines again")
    async def opt_in(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        lifted = await self.privacy.opt_in(interaction.user.id)
        text = (
            "Welcome back: Kilroy records your reactions, replies and story lines again."
            if lifted
            else ("You had not opted out: Kilroy already records your reactions, replies and story lines.")
        )
        await say(interaction, text, ephemeral=True)

    @app_commands.command(name="my-data", description="A file of everything Kilroy holds about you (only you see it)")
    async def my_data(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        export = await self.privacy.export(interaction.user.id)
        file = discord.File(io.BytesIO(export.payload), filename="kilroy-my-data.json")
        counts = ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in export.counts.items())
        await say(interaction, f"Everything Kilroy holds about you: {counts}.", ephemeral=True, file=file)

    async def run_retention(self) -> dict[str, int]:
        """The daily retention run (at start, then every 24 hours): the service prunes and VACUUMs."""
        return await self.privacy.run_retention()


async def setup(bot: KilroyBot) -> None:
    await bot.add_cog(Privacy(privacy=bot.services.privacy, database_jobs=bot.runs_database_jobs))
