"""Reactions and replies on Kilroy's own posts go to storage; on start, a catch-up reconciles missed ones."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import discord
from discord.ext import commands

from bot.config.settings import Settings, emoji_key
from bot.domain.safety import guild_allowed
from bot.domain.shards import owns_guild
from bot.logs import bind_log_context
from bot.storage import Storage

if TYPE_CHECKING:
    from bot.app.bot import KilroyBot

log = logging.getLogger(__name__)


class Engagement(commands.Cog):
    """Records votes and replies from human members; bots, Kilroy itself, servers outside KILROY_GUILD_IDS and
    members who asked to be forgotten never count (storage drops the latter, live and in catch-up alike)."""

    def __init__(
        self, bot: commands.Bot, *, settings: Settings, storage: Storage, clock: Callable[[], float] = time.time
    ) -> None:
        self.bot, self.settings, self.storage, self.clock = bot, settings, storage, clock
        self._catchup: asyncio.Task[int] | None = None

    def _me(self) -> int | None:
        return self.bot.user.id if self.bot.user else None

    def _here(self, guild_id: int | None) -> bool:
        return guild_allowed(guild_id, self.settings.discord.guild_ids)

    async def cog_load(self) -> None:
        self._catchup = asyncio.create_task(self._catch_up_when_ready())

    async def cog_unload(self) -> None:
        if self._catchup is not None:
            self._catchup.cancel()

    @commands.Cog.listener()
    async def on_ready(self) -> None:
        """Catch up again after every new gateway session: when a connection could not be resumed, Discord does
        not replay what happened meanwhile (the first session's catch-up is `cog_load`'s)."""
        if self._catchup is None or self._catchup.done():
            self._catchup = asyncio.create_task(self._catch_up_when_ready())

    @commands.Cog.listener()
    async def on_shard_ready(self, shard_id: int) -> None:
        """With several shards, one shard's new session fires only this (READY waits for every shard)."""
        await self.on_ready()

    @commands.Cog.listener()
    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        # each listener runs in its own task (discord.py): the ids stay on this event's lines, errors included
        bind_log_context(guild=payload.guild_id, channel=payload.channel_id, message_id=payload.message_id)
        # raw events arrive for uncached messages too; message_author_id tells cheaply if it was our post
        if not self._here(payload.guild_id) or payload.user_id == self._me():
            return
        if payload.message_author_id is not None and payload.message_author_id != self._me():
            return
        is_bot = bool(payload.member and payload.member.bot)
        await self.storage.add_vote(
            payload.message_id, payload.user_id, emoji_key(str(payload.emoji)), at=self.clock(), is_bot=is_bot
        )

    @commands.Cog.listener()
    async def on_raw_reaction_remove(self, payload: discord.RawReactionActionEvent) -> None:
        # .member is None on remove; a bot's add was never stored as a vote, and a known bot's removal is not logged
        bind_log_context(guild=payload.guild_id, channel=payload.channel_id, message_id=payload.message_id)
        if not self._here(payload.guild_id) or payload.user_id == self._me():
            return
        user = self.bot.get_user(payload.user_id)
        if user is not None and user.bot:
            return
        await self.storage.remove_vote(
            payload.message_id, payload.user_id, emoji_key(str(payload.emoji)), at=self.clock()
        )

    @commands.Cog.listener()
    async def on_raw_reaction_clear(self, payload: discord.RawReactionClearEvent) -> None:
        """A moderator removed all reactions of a message: one event, no removal per member."""
        bind_log_context(guild=payload.guild_id, channel=payload.channel_id, message_id=payload.message_id)
        if self._here(payload.guild_id):
            await self.storage.clear_votes(payload.message_id, at=self.clock())

    @commands.Cog.listener()
    async def on_raw_reaction_clear_emoji(self, payload: discord.RawReactionClearEmojiEvent) -> None:
        """A moderator removed every reaction of one emoji from a message."""
        bind_log_context(guild=payload.guild_id, channel=payload.channel_id, message_id=payload.message_id)
        if self._here(payload.guild_id):
            await self.storage.clear_votes(payload.message_id, emoji_key(str(payload.emoji)), at=self.clock())

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        ref = message.reference
        if message.guild is None or message.author.bot or ref is None or ref.message_id is None:
            return
        # only a reply answers the post: a pin notice, a forward or a thread's starter also reference it
        if message.type is not discord.MessageType.reply:
            return
        if not self._here(message.guild.id):
            return
        bind_log_context(guild=message.guild.id, channel=message.channel.id, message_id=ref.message_id)  # the post's
        await self.storage.add_reply(
            message.id, ref.message_id, message.author.id, at=self.clock(), length=len(message.content or "")
        )

    @commands.Cog.listener()
    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        await self.storage.remove_reply(payload.message_id)

    @commands.Cog.listener()
    async def on_raw_bulk_message_delete(self, payload: discord.RawBulkMessageDeleteEvent) -> None:
        """A moderator's purge: the replies among the deleted messages stop counting."""
        await self.storage.remove_replies(payload.message_ids)

    async def _catch_up_when_ready(self) -> int:
        await self.bot.wait_until_ready()
        try:
            return await self.catch_up()
        except Exception:
            log.exception("reaction catch-up failed")
            return 0

    async def catch_up(self) -> int:
        """For posts still inside the settle window, in servers on the shards this process holds, fetch their
        reactions and reconcile; return votes changed."""
        since = self.clock() - self.settings.scoring.settle_hours * 3600.0
        changed = 0
        for post in await self.storage.posts_since(since):
            if post.guild_id is not None and not owns_guild(post.guild_id, self.settings.shards):
                continue  # another process holds this server's shard: its catch-up is that process's
            channel = self.bot.get_channel(post.channel_id)
            if channel is None or post.message_id is None:
                continue
            seen_at = self.clock()  # live reactions stored from here on are newer than what the fetch shows
            try:
                message = await channel.fetch_message(post.message_id)  # type: ignore[union-attr]
            except discord.NotFound:
                continue
            except discord.HTTPException:
                log.warning("catch-up: could not fetch message %s", post.message_id)
                continue
            current: list[tuple[int, str]] = []
            for reaction in message.reactions:
                # the API lists normal reactions unless asked for super reactions, which live events also count
                kinds = [discord.ReactionType.normal] + ([discord.ReactionType.burst] if reaction.burst_count else [])
                for kind in kinds:
                    async for user in reaction.users(type=kind):
                        if not user.bot and user.id != self._me():
                            current.append((user.id, emoji_key(str(reaction.emoji))))
            changed += await self.storage.reconcile_votes(post.message_id, current, at=self.clock(), seen_at=seen_at)
        if changed:
            log.info("catch-up reconciled %d vote(s) missed while offline", changed)
        return changed


async def setup(bot: KilroyBot) -> None:
    s = bot.services
    await bot.add_cog(Engagement(bot, settings=s.settings, storage=s.storage, clock=s.clock))
