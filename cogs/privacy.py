"""/forget-me, /opt-in and /my-data for every member, and the retention schedule (prune old raw data, VACUUM)."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands, tasks

from bot.adapters.store import AdapterStore
from bot.app.checks import say
from bot.config.settings import Settings
from bot.storage import Storage
from bot.storage.privacy import FORGOTTEN, dump_json

if TYPE_CHECKING:
    from bot.app.bot import KilroyBot

log = logging.getLogger(__name__)


def forget_text(done: dict[str, int], scrubbed: int) -> str:
    """The truthful answer to /forget-me: what was deleted or redacted, kind by kind."""
    parts = [f"{n} {kind}" for kind, n in done.items() if n]
    if scrubbed:
        parts.append(f"{scrubbed} adapter metadata file(s)")
    what = ", ".join(parts) if parts else "nothing was held about you"
    return (
        f"Done: {what}. Your story lines and openings are replaced by a removal note, prompts that held them are "
        "blanked and never trained on. From now on Kilroy records nothing of yours (reactions, replies, story lines); "
        "`/opt-in` undoes that. Adapters trained before now are not retrained."
    )


class Privacy(commands.Cog):
    """What Kilroy holds about a member, how to see it, and how to make it forget."""

    def __init__(
        self,
        *,
        settings: Settings,
        storage: Storage,
        store: AdapterStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings, self.storage, self.store, self.clock = settings, storage, store, clock
        self.retention = tasks.loop(hours=24)(self.run_retention)
        self._forgotten_since_vacuum = False

    async def cog_load(self) -> None:
        self.retention.start()

    async def cog_unload(self) -> None:
        self.retention.cancel()

    @app_commands.command(name="forget-me", description="Delete everything Kilroy holds about you and stop recording")
    async def forget_me(self, interaction: discord.Interaction) -> None:
        # the database may be busy (a VACUUM after retention): answer "thinking" privately first, so the member
        # always hears back, within Discord's 3 s
        await interaction.response.defer(ephemeral=True, thinking=True)
        done = await self.storage.forget_member(interaction.user.id, at=self.clock())
        scrubbed = await asyncio.to_thread(self.store.scrub, str(interaction.user.id), FORGOTTEN) if self.store else 0
        self._forgotten_since_vacuum = True
        await say(interaction, forget_text(done, scrubbed), ephemeral=True)

    @app_commands.command(name="opt-in", description="Let Kilroy record your reactions, replies and story lines again")
    async def opt_in(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        lifted = await self.storage.opt_in(interaction.user.id)
        text = (
            "Welcome back: Kilroy records your reactions, replies and story lines again."
            if lifted
            else ("You had not opted out: Kilroy already records your reactions, replies and story lines.")
        )
        await say(interaction, text, ephemeral=True)

    @app_commands.command(name="my-data", description="A file of everything Kilroy holds about you (only you see it)")
    async def my_data(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        data = await self.storage.member_data(interaction.user.id)
        data["retention_days"] = self.settings.safety.retention_days
        file = discord.File(io.BytesIO(dump_json(data)), filename="kilroy-my-data.json")
        counts = ", ".join(f"{len(v)} {k.replace('_', ' ')}" for k, v in data.items() if isinstance(v, list))
        await say(interaction, f"Everything Kilroy holds about you: {counts}.", ephemeral=True, file=file)

    async def run_retention(self) -> dict[str, int]:
        """Delete raw events and replies older than KILROY_RETENTION_DAYS once trained on; VACUUM if anything was
        deleted (by retention or a /forget-me) since the last run. Runs at start and then daily."""
        days = self.settings.safety.retention_days
        done: dict[str, int] = {}
        if days > 0:
            try:
                done = await self.storage.prune(older_than=self.clock() - days * 86400.0)
            except Exception:
                log.exception("retention: pruning failed; it will be tried again on the next run")
            if any(done.values()):
                log.info("retention: deleted %s", ", ".join(f"{n} {k}" for k, n in done.items()))
        if any(done.values()) or self._forgotten_since_vacuum:
            try:
                await self.storage.vacuum()
                self._forgotten_since_vacuum = False
            except Exception:  # a busy database: keep the loop alive and try again tomorrow
                log.exception("retention: VACUUM failed; it will be tried again on the next run")
        return done


async def setup(bot: KilroyBot) -> None:
    s = bot.services
    await bot.add_cog(Privacy(settings=s.settings, storage=s.storage, store=s.adapter_store, clock=s.clock))
