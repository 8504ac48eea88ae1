"""Scheduled posts: generate, send to each configured channel, record with the exact ids sampled."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import TYPE_CHECKING

import discord
from discord.ext import commands, tasks

from bot.app.checks import NO_MENTIONS
from bot.config.settings import Settings
from bot.domain.safety import OutputFilter, guild_allowed
from bot.engine.compose import RECENT_POSTS, compose_post
from bot.engine.generator import Generator, GeneratorBusy
from bot.logs import bind_log_context, log_context
from bot.storage import NewPost, Storage
from bot.training.reward_model import REWARD_MODEL_FILE, RewardModelFile
from bot.trials.service import TrialService

if TYPE_CHECKING:
    from bot.app.bot import KilroyBot

log = logging.getLogger(__name__)


class Posting(commands.Cog):
    """Posts generated text into KILROY_POST_CHANNEL_IDS every KILROY_POST_INTERVAL_MINUTES."""

    def __init__(
        self,
        bot: commands.Bot,
        *,
        settings: Settings,
        storage: Storage,
        generator: Generator,
        trials: TrialService | None = None,
        output_filter: OutputFilter | None = None,
        reward_model: RewardModelFile | None = None,
    ) -> None:
        self.bot, self.settings, self.storage, self.generator = bot, settings, storage, generator
        # the nightly run's latest reward model, which ranks best-of-N candidates
        self.reward_model = reward_model or RewardModelFile(settings.adapters_dir / REWARD_MODEL_FILE)
        self.output_filter = output_filter or OutputFilter(settings.discord.blocklist, settings.safety.allow_urls)
        self.trials = trials
        self.loop = tasks.loop(minutes=settings.discord.post_interval_minutes)(self.post_everywhere)
        self.loop.before_loop(self._before)

    async def cog_load(self) -> None:
        if self.settings.discord.post_channel_ids:
            self.loop.start()
        else:
            log.warning("KILROY_POST_CHANNEL_IDS is empty: Kilroy will not post on a schedule")

    async def cog_unload(self) -> None:
        self.loop.cancel()

    async def _before(self) -> None:
        await self.bot.wait_until_ready()

    async def post_everywhere(self) -> None:
        """One round: a post in every configured channel (a little jitter between channels)."""
        # jitter up to 10% of the interval (at most a minute) so posts do not land like clockwork
        jitter = min(60.0, self.settings.discord.post_interval_minutes * 6.0)
        if self.trials is not None:
            try:
                await self.trials.check()  # a running A/B trial may have settled enough posts to decide
            except Exception:
                log.exception("checking the A/B trial failed; posting goes on")
        for channel_id in self.settings.discord.post_channel_ids:
            await asyncio.sleep(random.uniform(0, jitter))
            with log_context(channel=channel_id):
                try:
                    await self.post_to(channel_id)
                except Exception:
                    # tasks.loop ends for good on any error it does not retry (a Discord 5xx, a model error): one bad
                    # round must not stop the schedule
                    log.exception("posting to channel %s failed; trying again next round", channel_id)

    async def _recent_texts(self, channel_id: int) -> list[str]:
        """The channel's latest posts (at most RECENT_POSTS, from the last 30 days), for best-of-N's novelty term."""
        posts = await self.storage.posts_since(time.time() - 30 * 86400.0)
        return [p.text for p in posts if p.channel_id == channel_id][-RECENT_POSTS:]

    async def post_to(self, channel_id: int) -> discord.Message | None:
        """Generate and send one post; skip (with a warning) a channel we cannot post in."""
        with log_context(channel=channel_id):  # every line of this post names its channel, then guild and post
            return await self._post_to(channel_id)

    async def _post_to(self, channel_id: int) -> discord.Message | None:
        channel = self.bot.get_channel(channel_id)
        if channel is None:
            try:
                channel = await self.bot.fetch_channel(channel_id)
            except discord.HTTPException:
                log.warning("post channel %s not found or not visible; skipping", channel_id)
                return None
        guild = getattr(channel, "guild", None)
        if guild is None or not guild_allowed(guild.id, self.settings.discord.guild_ids):
            log.warning("post channel %s is not in a server of KILROY_GUILD_IDS; skipping", channel_id)
            return None
        bind_log_context(guild=guild.id)  # until post_to's block ends
        if not channel.permissions_for(guild.me).send_messages:  # type: ignore[union-attr]
            log.warning("no permission to send messages in channel %s; skipping", channel_id)
            return None
        choice = await self.trials.choose() if self.trials is not None else None  # an A/B trial's arm, if any
        g = self.settings.generation
        model = await self.reward_model.current() if g.best_of > 1 else None
        recent = await self._recent_texts(channel_id) if model is not None and g.best_of_novelty > 0 else ()
        try:
            picked = await compose_post(
                self.generator,
                prompt=g.prompt,
                output_filter=self.output_filter,
                tries=self.settings.safety.filter_retries,
                adapter=choice.adapter if choice else None,
                best_of=g.best_of,
                scorer=model.scores if model is not None else None,
                explore=g.best_of_explore,
                recent=recent,
                novelty=g.best_of_novelty,
            )
        except GeneratorBusy:
            log.warning("generation queue full; skipping this round's post in channel %s", channel_id)
            return None
        if picked is None:
            log.warning("no postable text for channel %s this round", channel_id)
            return None
        sample = picked.sample
        try:
            message = await channel.send(sample.text, allowed_mentions=NO_MENTIONS)  # type: ignore[union-attr]
        except discord.Forbidden:
            log.warning("Discord refused a post in channel %s; skipping", channel_id)
            return None
        post_id = await self.storage.add_post(
            TrialService.tag(
                NewPost.from_sample(
                    sample,
                    channel_id=channel_id,
                    guild_id=guild.id,
                    created_at=time.time(),
                    message_id=message.id,
                ),
                choice,
            )
        )
        if model is not None:  # every candidate is a sample of the policy: training learns from them all
            await self.storage.add_candidates(post_id, picked.candidates, chosen=picked.chosen)
        bind_log_context(post=post_id, message_id=message.id, adapter=sample.adapter)
        log.info("posted %d in channel %s (adapter %s)", post_id, channel_id, sample.adapter)
        return message


async def setup(bot: KilroyBot) -> None:
    s = bot.services
    await bot.add_cog(
        Posting(
            bot,
            settings=s.settings,
            storage=s.storage,
            generator=s.generator,
            output_filter=s.output_filter,
            trials=s.trials,
        )
    )
