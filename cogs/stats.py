"""/stats: mean score per day (coloured by adapter) as a PNG, and the top posts."""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.config import Settings
from bot.plotting import plot_daily_scores
from bot.scoring import formula_from_settings
from bot.storage import Storage
from cogs._checks import say

if TYPE_CHECKING:
    from bot.app import KilroyBot


class Stats(commands.Cog):
    """Engagement at a glance."""

    def __init__(self, *, settings: Settings, storage: Storage) -> None:
        self.settings, self.storage = settings, storage

    @app_commands.command(name="stats", description="Kilroy's engagement per day and its best posts")
    @app_commands.describe(days="How many days back (default 14)")
    async def stats(self, interaction: discord.Interaction, days: app_commands.Range[int, 1, 365] = 14) -> None:
        await interaction.response.defer(thinking=True)
        formula = formula_from_settings(self.settings.scoring)
        # scored and grouped in a worker thread: a year of posts decoded on the loop blocked it for 0.6 s
        summary = await self.storage.stats_summary(formula, since=time.time() - days * 86400.0)
        if not summary.posts:
            await say(interaction, f"No posts in the last {days} days yet.")
            return
        per_day = summary.days
        lines = []
        for post in summary.top:
            link = (
                f"https://discord.com/channels/{post.guild_id}/{post.channel_id}/{post.message_id}"
                if post.guild_id and post.message_id
                else ""
            )
            lines.append(f"**{post.score:.1f}** · {discord.utils.escape_markdown(post.text[:120])} {link}".rstrip())
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "stats.png"
            # matplotlib is CPU work: keep it off the event loop
            await asyncio.to_thread(
                plot_daily_scores,
                [d.day for d in per_day],
                [d.mean_score for d in per_day],
                [d.adapter for d in per_day],
                path,
            )
            await say(
                interaction,
                f"{summary.posts} post{'' if summary.posts == 1 else 's'} in {days} days. Top posts:\n"
                + "\n".join(lines),
                file=discord.File(path, filename="stats.png"),
            )


async def setup(bot: KilroyBot) -> None:
    s = bot.services
    await bot.add_cog(Stats(settings=s.settings, storage=s.storage))
