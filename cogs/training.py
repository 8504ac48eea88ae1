"""Nightly retraining and /retrain for moderators, with a live progress bar.

Per community (issue 24): the night trains every server with enough new settled posts, stalest first, one at a
time, within KILROY_TRAIN_BUDGET_MINUTES (bot/training/night.py); each server's result goes to its own log channel
(KILROY_LOG_CHANNEL_IDS, else KILROY_LOG_CHANNEL_ID). `/retrain` trains the server it runs in, only; while another
training runs it says where this server stands in tonight's queue.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import discord
from discord import app_commands
from discord.ext import commands, tasks

from bot.app.checks import NO_MENTIONS, NotAllowed, audit, is_moderator, to_log_channel
from bot.config.settings import Settings
from bot.domain.community import community_id, guild_of
from bot.domain.records import RunResult
from bot.domain.shards import runs_database_jobs
from bot.storage import Storage
from bot.training.runner import TrainingBusy, TrainingRunner
from bot.trials.service import TrialService

if TYPE_CHECKING:
    from bot.app.bot import KilroyBot
    from bot.services import Communities
    from bot.training.night import NightResult
    from bot.training.result import Progress

log = logging.getLogger(__name__)


def progress_text(event: Progress) -> str:
    """A one-line progress bar from a training event."""
    if event.kind == "progress":
        done, total = event.step or 0, max(1, event.of or 1)
        filled = int(20 * done / total)
        stage = "evaluating" if event.stage == "evaluate" else "training"
        loss = f" · loss {event.loss:+.3f}" if event.loss is not None else ""
        return f"{stage} `{'█' * filled}{'░' * (20 - filled)}` {done}/{total}{loss}"
    if event.kind == "start":
        return f"training on {event.posts} posts from adapter {event.parent}…"
    return "preparing…"


def summary_text(outcome: RunResult) -> str:
    """The final message of a run."""
    if outcome.status == "skipped":
        return f"Nothing to train: {outcome.reason}."
    m = outcome.metrics
    if outcome.trial:
        verdict = "passed the gate and is now on an A/B trial against the serving adapter"
    elif outcome.promoted:
        verdict = "promoted and now serving"
    elif outcome.accepted:
        verdict = "passed the gate but not served"
    else:
        verdict = "refused by the gate: kept on disk, never served"
    figures = " · ".join(f"{k} {m[k]:.3f}" for k in ("loss", "kl", "distinct2", "mean_score") if k in m)
    return f"Adapter **{outcome.adapter}**: {verdict}. {outcome.reason}\n{figures}"


class Training(commands.Cog):
    """Runs training in its own process; moderators can trigger it."""

    def __init__(
        self,
        bot: commands.Bot,
        *,
        settings: Settings,
        runner: TrainingRunner,
        clock: Callable[[], float] = time.monotonic,
        storage: Storage | None = None,
        trials: TrialService | None = None,
        communities: Communities | None = None,
    ) -> None:
        self.bot, self.settings, self.runner, self.clock = bot, settings, runner, clock
        self.communities = communities  # per server (None: one flat store, one runner)
        self.storage = storage  # for the audit trail
        self.trials = trials  # the nightly run waits while a trial decides
        t = settings.training
        run_at = dt.time(t.train_time.hour, t.train_time.minute, tzinfo=ZoneInfo(t.timezone))
        self.nightly = tasks.loop(time=run_at)(self.run_nightly)

    async def cog_load(self) -> None:
        if runs_database_jobs(self.settings.shards):  # one nightly run for the database, not one per shard process
            self.nightly.start()

    async def cog_unload(self) -> None:
        self.nightly.cancel()

    async def run_nightly(self) -> RunResult | None:
        """The scheduled run: train, gate, hot-swap, and a summary in the log channel if set. Per community: the
        night over every stale server (each summary in its own log channel); returns the last result."""
        if self.communities is not None:
            results = await self._run_night()
            done = [r.result for r in results if r.result is not None]
            return done[-1] if done else None
        try:
            trial = await self.trials.running() if self.trials is not None else None
        except Exception:  # an error escaping here would stop the nightly loop for good
            log.exception("nightly training skipped: could not read the A/B trial's state")
            return None
        if trial is not None and self.settings.trials.mode != "guard":
            # a trial needs its posts to pile up; a new candidate every night would restart it forever (a guard
            # does not: the newest candidate takes over its candidate arm and the evidence carries on)
            log.info("nightly training waits: A/B trial #%d is still deciding", trial.id)
            return None
        try:
            outcome = await self.runner.run("nightly")
        except TrainingBusy:
            log.info("nightly training skipped: a run is already in progress")
            return None
        except Exception:
            log.exception("nightly training failed; still serving the previous adapter")
            await self._log_channel("Nightly training failed; the previous adapter keeps serving. See the logs.")
            return None
        await self._log_channel("Nightly training: " + summary_text(outcome))
        return outcome

    async def _log_channel(self, text: str, guild_id: int | None = None) -> None:
        await to_log_channel(self.bot, self.settings.discord, text, guild_id=guild_id)

    async def _run_night(self) -> list[NightResult]:
        assert self.communities is not None

        async def report(outcome: NightResult) -> None:
            guild = guild_of(outcome.community)
            if outcome.result is not None:
                text = "Nightly training: " + summary_text(outcome.result)
            elif outcome.error is not None:
                text = "Nightly training failed; the previous adapter keeps serving. See the logs."
            else:
                text = f"Nightly training waits for the next night: {outcome.skipped}."
            await self._log_channel(text, guild)

        try:
            return await self.communities.run_night("nightly", on_result=report)
        except TrainingBusy:
            log.info("nightly training skipped: a run is already in progress")
        except Exception:  # an error escaping here would stop the nightly loop for good
            log.exception("the night's training failed")
        return []

    # No default_permissions: Discord would hide the command from KILROY_MODERATOR_ROLE_IDS holders who lack Manage
    # Server. Everyone sees it; the check below (this server's roles and permissions) decides.
    @app_commands.command(name="retrain", description="Train a new adapter now (moderators)")
    @app_commands.guild_only()
    async def retrain(self, interaction: discord.Interaction) -> None:
        if not is_moderator(interaction, self.settings.discord):
            raise NotAllowed("Only moderators (Manage Server or a moderator role) can retrain Kilroy.")
        runner = self.runner
        if self.communities is not None and interaction.guild_id is not None:
            community = community_id(interaction.guild_id)
            runner = self.communities.runner(community)  # this server's lineage only
            if runner.busy:
                place = self.communities.night.place(community)
                if place == 0:
                    raise TrainingBusy("this server is training now, in tonight's run")
                if place is not None:
                    raise TrainingBusy(f"tonight's run is under way; this server is number {place} in its queue")
                raise TrainingBusy("another server is training now; this server is not in tonight's queue")
        elif runner.busy:
            raise TrainingBusy()
        await interaction.response.defer(thinking=True)
        await audit(self.bot, interaction, "/retrain", storage=self.storage, settings=self.settings.discord)
        last_edit = 0.0

        async def on_progress(event: Progress) -> None:
            nonlocal last_edit
            now = self.clock()
            if now - last_edit < 1.0:  # at most one edit a second
                return
            last_edit = now
            try:
                await interaction.edit_original_response(content=progress_text(event), allowed_mentions=NO_MENTIONS)
            except discord.HTTPException:
                log.debug("progress edit failed", exc_info=True)

        # the reason is stored with the run and in the adapter's meta.json: no member id there (the audit trail has it)
        outcome = await runner.run("/retrain", on_progress)
        summary = summary_text(outcome)
        try:
            await interaction.edit_original_response(content=summary, allowed_mentions=NO_MENTIONS)
        except discord.HTTPException:
            # the interaction's token lasts 15 minutes and a night's training may take longer: say it in the channel
            log.info("/retrain outlived its interaction; reporting in the channel instead")
            channel = interaction.channel
            if channel is not None and hasattr(channel, "send"):
                try:
                    await channel.send(f"/retrain finished. {summary}", allowed_mentions=NO_MENTIONS)
                except discord.HTTPException:
                    log.warning("could not report the /retrain result", exc_info=True)


async def setup(bot: KilroyBot) -> None:
    s = bot.services
    await bot.add_cog(
        Training(
            bot,
            settings=s.settings,
            runner=s.training,
            storage=s.storage,
            trials=s.trials,
            communities=s.communities,
        )
    )
