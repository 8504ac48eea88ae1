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

from bot.app.checks import say
from bot.config.settings import Settings
from bot.domain.safety import OutputFilter, escape_member_text
from bot.http.charts import daily_scores_png
from bot.storage import Storage

if TYPE_CHECKING:
    from bot.app.bot import KilroyBot


class Stats(commands.Cog):
    """Engagement at a glance."""

    def __init__(self, *, settings: Settings, storage: Storage, output_filter: OutputFilter | None = None) -> None:
        self.settings, self.storage, self.output_filter = settings, storage, output_filter

    @app_commands.command(name="stats", description="Kilroy's engagement per day and its best posts")
    @app_commands.describe(days="How many days back (default 14)")
    async def stats(self, interaction: discord.Interaction, days: app_commands.Range[int, 1, 365] = 14) -> None:
        await interaction.response.defer(thinking=True)
        sc = self.settings.scoring
        # this server's posts only (one server never sees another's), aggregated by SQLite off the event loop
        summary = await self.storage.stats_summary(
            created_after=time.time() - days * 86400.0,
            guild_id=interaction.guild_id or -1,
            emoji_weights=sc.emoji_weights,
            default_weight=sc.default_emoji_weight,
            reply_weight=sc.reply_weight,
        )
        filtered = f"\n{self.output_filter.summary()}" if self.output_filter is not None else ""
        if not summary.posts:
            await say(interaction, f"No posts in the last {days} days yet.{filtered}")
            return
        per_day, best = summary.days, summary.top
        lines = []
        for score, post in best:
            link = (
                f"https://discord.com/channels/{post.guild_id}/{post.channel_id}/{post.message_id}"
                if post.guild_id and post.message_id
                else ""
            )
            lines.append(f"**{score:.1f}** · {escape_member_text(post.text[:120])} {link}".rstrip())
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "stats.png"
            # matplotlib is CPU work: keep it off the event loop
            await asyncio.to_thread(
                daily_scores_png,
                [d[0] for d in per_day],
                [d[2] for d in per_day],
                [d[1] for d in per_day],
                path,
            )
            await say(
                interaction,
                f"{summary.posts} post{'' if summary.posts == 1 else 's'} in {days} days. Top posts:\n"
                + "\n".join(lines)
                + filtered,
                file=discord.File(path, filename="stats.png"),
            )


async def setup(bot: KilroyBot) -> None:
    s = bot.services
    await bot.add_cog(Stats(settings=s.settings, storage=s.storage, output_filter=s.output_filter))
