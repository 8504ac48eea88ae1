"""/story start|line|show|end: the exquisite-corpse exchange in a channel or thread."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.app.checks import NO_MENTIONS, say
from bot.domain.safety import escape_member_text, neutralise_mentions
from bot.stories.service import StoryService, Turn

if TYPE_CHECKING:
    from bot.app.bot import KilroyBot

MESSAGE_LIMIT = 2000


class Story(commands.GroupCog, group_name="story", group_description="Write a story with Kilroy, line by line"):
    """Translates /story commands into StoryService calls."""

    def __init__(self, *, stories: StoryService) -> None:
        self.stories = stories
        super().__init__()

    @app_commands.command(name="start", description="Start a story here (one per channel or thread)")
    @app_commands.describe(opening="How the story begins (optional)")
    async def start(self, interaction: discord.Interaction, opening: str | None = None) -> None:
        story = await self.stories.start(
            interaction.channel_id or 0, opening=opening, member_id=interaction.user.id, guild_id=interaction.guild_id
        )
        opening_text = escape_member_text(story.opening)
        await say(interaction, f"*{story.instruction}*\n{opening_text}\n\nAdd the next line with `/story line`.")

    @app_commands.command(name="line", description="Give the next line as human director; Kilroy answers")
    @app_commands.describe(text="Your line")
    async def line(self, interaction: discord.Interaction, text: str) -> None:
        # validate before deferring: a refusal must stay an ephemeral message; waiting for another member's turn
        # and generating may take over 3 s
        await self.stories.validate(interaction.channel_id or 0, interaction.user.id, text)
        await interaction.response.defer(thinking=True)

        async def send(turn: Turn) -> int:
            message = await interaction.followup.send(
                f"**human_director:** {escape_member_text(turn.human_text)}\n**machine_director:** {turn.text}",
                wait=True,
                allowed_mentions=NO_MENTIONS,
            )
            return message.id

        await self.stories.take_turn(
            interaction.channel_id or 0, interaction.user.id, text, send=send, guild_id=interaction.guild_id
        )

    @app_commands.command(name="show", description="Show the story so far")
    async def show(self, interaction: discord.Interaction) -> None:
        await self._send_transcript(interaction, await self.stories.show(interaction.channel_id or 0))

    @app_commands.command(name="end", description="End the story here")
    async def end(self, interaction: discord.Interaction) -> None:
        if self.stories.answering(interaction.channel_id or 0):  # it waits for that line: maybe more than 3 s
            await interaction.response.defer(thinking=True)
        transcript = await self.stories.end(interaction.channel_id or 0)
        await self._send_transcript(interaction, transcript, prefix="The end.\n")

    async def _send_transcript(self, interaction: discord.Interaction, transcript: str, prefix: str = "") -> None:
        # members' lines are in it: neutralise mentions (the file is not rendered and keeps the raw words)
        text = prefix + neutralise_mentions(transcript)
        if len(text) <= MESSAGE_LIMIT:
            await say(interaction, text)
        else:
            data = discord.File(io.BytesIO(transcript.encode("utf-8")), filename="story.txt")
            await say(interaction, prefix + "The story is long; here it is as a file.", file=data)


async def setup(bot: KilroyBot) -> None:
    await bot.add_cog(Story(stories=bot.services.stories))
