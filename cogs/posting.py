"""Scheduled posts: generate, send to each configured channel, record with the exact ids sampled.

Per community (issue 24): a channel's server is its community ("g<guild id>"). Its post is written by the
reference that serves that community (`Communities.reference`: its own adapter, else the commons', else base) or,
while its A/B trial runs, by the arm the trial picks; best-of-N ranks with that community's reward model. The
reference is recorded on the post (`posts.adapter`). Posts that fall due together are written in one mixed-adapter
batch (`compose_posts`: each row by its own reference, best-of-N and the output filter per row).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import discord
from discord.ext import commands, tasks

from bot.app.checks import NO_MENTIONS
from bot.config.settings import Settings
from bot.domain.community import community_id
from bot.domain.safety import OutputFilter, guild_allowed
from bot.domain.shards import owns_guild, runs_database_jobs
from bot.engine.compose import RECENT_POSTS, Choice, PostRequest, compose_post, compose_posts
from bot.engine.generator import Generator, GeneratorBusy
from bot.logs import bind_log_context, log_context
from bot.storage import NewPost, Storage
from bot.training.reward_model import REWARD_MODEL_FILE, RewardModelFile
from bot.trials.service import TrialService

if TYPE_CHECKING:
    from bot.app.bot import KilroyBot
    from bot.services import Communities

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
        communities: Communities | None = None,
    ) -> None:
        self.bot, self.settings, self.storage, self.generator = bot, settings, storage, generator
        self.communities = communities  # per server: what serves it, its trials, its reward model (None: one store)
        # the nightly run's latest reward model, which ranks best-of-N candidates (per community: its own)
        self.reward_model = reward_model or RewardModelFile(settings.adapters_dir / REWARD_MODEL_FILE)
        self._reward_models: dict[str, RewardModelFile] = {}
        self.output_filter = output_filter or OutputFilter(settings.discord.blocklist, settings.safety.allow_urls)
        self.trials = trials
        self._elsewhere: set[int] = set()  # post channels in servers on shards another process holds
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
        """One round: a post in every configured channel, all written in one mixed-adapter batch (each row by its
        own community's reference or trial arm), then sent with a little jitter between channels."""
        # jitter up to 10% of the interval (at most a minute) so posts do not land like clockwork
        jitter = min(60.0, self.settings.discord.post_interval_minutes * 6.0)
        # one process decides the trials (shard 0's); each community's trial on its own
        for trials in self._all_trials() if runs_database_jobs(self.settings.shards) else []:
            try:
                await trials.check()  # a running A/B trial may have settled enough posts to decide
            except Exception:
                log.exception("checking the A/B trial failed; posting goes on")
        plans: list[_Plan] = []
        for channel_id in self._due():
            with log_context(channel=channel_id):
                try:
                    plan = await self._plan(channel_id)
                except Exception:
                    # tasks.loop ends for good on any error it does not retry (a Discord 5xx, a model error): one bad
                    # round must not stop the schedule
                    log.exception("preparing a post for channel %s failed; trying again next round", channel_id)
                    continue
            if plan is not None:
                plans.append(plan)
        try:
            picks = await self._compose(plans)
        except Exception:
            log.exception("writing this round's posts failed; trying again next round")
            return
        for plan, picked in zip(plans, picks, strict=True):
            await asyncio.sleep(random.uniform(0, jitter))
            with log_context(channel=plan.channel_id, guild=plan.guild_id):
                try:
                    await self._send(plan, picked)
                except Exception:
                    log.exception("posting to channel %s failed; trying again next round", plan.channel_id)

    def _due(self) -> list[int]:
        """The channels whose posts fall due this round. The seam for mixed batches: the serving engine's
        mixed-adapter batch takes these rows (each with its community's reference) in one generate call."""
        # another process's channels (their servers are on its shards) are skipped without a jitter to wait for
        return [c for c in self.settings.discord.post_channel_ids if c not in self._elsewhere]

    def _all_trials(self) -> list[TrialService]:
        if self.communities is None:
            return [self.trials] if self.trials is not None else []
        return [self.communities.trials(c) for c in self.communities.lineages.communities()]

    def _trials_of(self, community: str | None) -> TrialService | None:
        if self.communities is None or community is None:
            return self.trials
        return self.communities.trials(community)

    def _reward_model_of(self, community: str | None) -> RewardModelFile:
        if self.communities is None or community is None:
            return self.reward_model
        found = self._reward_models.get(community)
        if found is None:
            found = self._reward_models[community] = RewardModelFile(
                self.communities.lineages.reward_model_path(community)
            )
        return found

    async def _recent_texts(self, channel_id: int) -> list[str]:
        """The channel's latest posts (at most RECENT_POSTS, from the last 30 days), for best-of-N's novelty term."""
        posts = await self.storage.posts_since(time.time() - 30 * 86400.0)
        return [p.text for p in posts if p.channel_id == channel_id][-RECENT_POSTS:]

    async def post_to(self, channel_id: int) -> discord.Message | None:
        """Generate and send one post; skip (with a warning) a channel we cannot post in."""
        with log_context(channel=channel_id):  # every line of this post names its channel, then guild and post
            return await self._post_to(channel_id)

    async def _post_to(self, channel_id: int) -> discord.Message | None:
        plan = await self._plan(channel_id)
        if plan is None:
            return None
        bind_log_context(guild=plan.guild_id)  # until post_to's block ends
        (picked,) = await self._compose([plan])
        return await self._send(plan, picked)

    async def _plan(self, channel_id: int) -> _Plan | None:
        """Everything a post needs before it is written (channel, server, community, trial arm, reward model), or
        None for a channel we do not or cannot post in (with the reason logged)."""
        if channel_id in self._elsewhere:
            return None
        channel = self.bot.get_channel(channel_id)
        if channel is None:
            try:
                channel = await self.bot.fetch_channel(channel_id)
            except discord.HTTPException:
                log.warning("post channel %s not found or not visible; skipping", channel_id)
                return None
        guild = getattr(channel, "guild", None)
        if guild is not None and not owns_guild(guild.id, self.settings.shards):
            self._elsewhere.add(channel_id)  # a channel never changes server: no fetch on later rounds
            log.info("post channel %s is in server %s, on another process's shard: not ours", channel_id, guild.id)
            return None
        if guild is None or not guild_allowed(guild.id, self.settings.discord.guild_ids):
            log.warning("post channel %s is not in a server of KILROY_GUILD_IDS; skipping", channel_id)
            return None
        if not channel.permissions_for(guild.me).send_messages:  # type: ignore[union-attr]
            log.warning("no permission to send messages in channel %s; skipping", channel_id)
            return None
        community = community_id(guild.id) if self.communities is not None else None
        trials = self._trials_of(community)
        choice = await trials.choose() if trials is not None else None  # an A/B trial's arm, if any
        adapter = choice.adapter if choice else None
        if adapter is None and self.communities is not None and community is not None:
            adapter = await self.communities.reference(community)  # its own adapter, the commons', or base
        g = self.settings.generation
        model = await self._reward_model_of(community).current() if g.best_of > 1 else None
        recent = await self._recent_texts(channel_id) if model is not None and g.best_of_novelty > 0 else []
        return _Plan(channel_id, channel, guild.id, choice, adapter, model, tuple(recent))

    async def _compose(self, plans: list[_Plan]) -> list[Choice | None]:
        """One choice per plan. Several plans are written in ONE mixed-adapter batch (each row by its plan's
        reference, best-of-N and the filter per row); a single plan is a plain batch. None: no postable text."""
        if not plans:
            return []
        g = self.settings.generation
        tries = self.settings.safety.filter_retries
        try:
            if len(plans) == 1:
                p = plans[0]
                return [
                    await compose_post(
                        self.generator,
                        prompt=g.prompt,
                        output_filter=self.output_filter,
                        tries=tries,
                        adapter=p.adapter,
                        best_of=g.best_of,
                        scorer=p.model.scores if p.model is not None else None,
                        explore=g.best_of_explore,
                        recent=p.recent,
                        novelty=g.best_of_novelty,
                    )
                ]
            requests = [
                PostRequest(
                    adapter=p.adapter or self.generator.active,
                    channel_id=p.channel_id,
                    prompt=g.prompt,
                    scorer=p.model.scores if p.model is not None else None,
                    best_of=g.best_of,
                    explore=g.best_of_explore,
                    recent=p.recent,
                    novelty=g.best_of_novelty,
                )
                for p in plans
            ]
            return await compose_posts(self.generator, requests, output_filter=self.output_filter, tries=tries)
        except GeneratorBusy:
            log.warning("generation queue full; skipping this round's posts")
            return [None] * len(plans)

    async def _send(self, plan: _Plan, picked: Choice | None) -> discord.Message | None:
        """Send a written post to its channel and record it with the exact ids sampled and every candidate."""
        if picked is None:
            log.warning("no postable text for channel %s this round", plan.channel_id)
            return None
        sample = picked.sample
        try:
            message = await plan.channel.send(sample.text, allowed_mentions=NO_MENTIONS)  # type: ignore[union-attr]
        except discord.Forbidden:
            log.warning("Discord refused a post in channel %s; skipping", plan.channel_id)
            return None
        post_id = await self.storage.add_post(
            TrialService.tag(
                NewPost.from_sample(
                    sample,
                    channel_id=plan.channel_id,
                    guild_id=plan.guild_id,
                    created_at=time.time(),
                    message_id=message.id,
                ),
                plan.choice,
            )
        )
        if plan.model is not None:  # every candidate is a sample of the policy: training learns from them all
            await self.storage.add_candidates(post_id, picked.candidates, chosen=picked.chosen)
        bind_log_context(post=post_id, message_id=message.id, adapter=sample.adapter)
        log.info("posted %d in channel %s (adapter %s)", post_id, plan.channel_id, sample.adapter)
        return message


@dataclass(frozen=True)
class _Plan:
    """A post about to be written: where it goes and what writes it."""

    channel_id: int
    channel: Any
    guild_id: int
    choice: Any  # the trial's arm (TrialService.choose), or None
    adapter: str | None  # the reference that writes it (None: the serving one)
    model: Any  # the community's reward model for best-of-N, or None
    recent: tuple[str, ...] = ()  # the channel's latest posts, for best-of-N's novelty term


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
            communities=s.communities,
        )
    )
