"""/adapter list|use|rollback|info for operators: switch LoRA adapters at run time, without a restart."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.adapters.serving import AdapterService
from bot.adapters.store import AdapterInfo
from bot.app.checks import NotAllowed, audit, is_operator, say
from bot.config.settings import Settings
from bot.storage import Storage
from bot.trials.service import NoTrial, TrialService

if TYPE_CHECKING:
    from bot.app.bot import KilroyBot


def _line(info: AdapterInfo) -> str:
    created = (
        dt.datetime.fromtimestamp(info.created_at, tz=dt.UTC).strftime("%Y-%m-%d %H:%M") if info.created_at else "–"
    )
    m = info.metrics
    figures = f" · kl {m['kl']:.3f} · distinct-2 {m['distinct2']:.2f}" if "kl" in m and "distinct2" in m else ""
    return f"{'▶' if info.active else '·'} `{info.name}` {created}{figures}"


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)  # hidden from most members; the operator check decides
class Adapters(commands.GroupCog, group_name="adapter", group_description="Manage Kilroy's LoRA adapters"):
    """Operators only: KILROY_OPERATOR_USER_IDS, KILROY_OPERATOR_ROLE_IDS, or the application owner."""

    def __init__(
        self,
        *,
        settings: Settings,
        adapters: AdapterService,
        storage: Storage | None = None,
        bot: commands.Bot | None = None,
        trials: TrialService | None = None,
    ) -> None:
        self.settings, self.adapters, self.storage, self.bot = settings, adapters, storage, bot
        self.trials = trials
        super().__init__()

    async def _audit(self, interaction: discord.Interaction, action: str, detail: str = "") -> None:
        if self.bot is not None:
            await audit(self.bot, interaction, action, detail, storage=self.storage, settings=self.settings.discord)

    async def _require_operator(self, interaction: discord.Interaction) -> None:
        if not await is_operator(interaction, self.settings.discord):
            raise NotAllowed("Only Kilroy's operators can manage adapters.")

    @app_commands.command(name="list", description="List adapter versions")
    async def list_(self, interaction: discord.Interaction) -> None:
        await self._require_operator(interaction)
        infos = self.adapters.list()[-20:]
        await say(interaction, "\n".join(_line(i) for i in infos), ephemeral=True)

    @app_commands.command(name="info", description="Show one adapter's metadata")
    async def info(self, interaction: discord.Interaction, name: str) -> None:
        await self._require_operator(interaction)
        i = self.adapters.info(name)
        gate = i.meta.get("gate", "")
        await say(interaction, f"{_line(i)}\nparent `{i.parent}` · {gate}", ephemeral=True)

    @app_commands.command(name="use", description="Serve another adapter now")
    async def use(self, interaction: discord.Interaction, name: str) -> None:
        await self._require_operator(interaction)
        await interaction.response.defer(ephemeral=True, thinking=True)  # loading from disk may take a moment
        took = await self.adapters.use(name)
        await self._audit(interaction, "/adapter use", name)
        await say(interaction, f"Now serving `{name}` (switched in {took * 1000:.0f} ms).", ephemeral=True)

    @app_commands.command(name="rollback", description="Go back to the previously served adapter")
    async def rollback(self, interaction: discord.Interaction) -> None:
        await self._require_operator(interaction)
        await interaction.response.defer(ephemeral=True, thinking=True)
        name = await self.adapters.rollback()
        await self._audit(interaction, "/adapter rollback", f"now {name}")
        await say(interaction, f"Rolled back: now serving `{name}`.", ephemeral=True)

    @app_commands.command(name="trial", description="The A/B trial: show it, stop it (keep the incumbent), promote")
    async def trial(
        self, interaction: discord.Interaction, action: Literal["show", "stop", "promote"] = "show"
    ) -> None:
        await self._require_operator(interaction)
        if self.trials is None:
            raise NoTrial()
        await interaction.response.defer(ephemeral=True, thinking=True)  # promoting loads an adapter
        by = f"user:{interaction.user.id}"  # recorded with the trial
        if action == "stop":
            t = await self.trials.stop(by)
            await self._audit(interaction, "/adapter trial stop", f"trial #{t.id}")
            text = f"Trial #{t.id} stopped: `{t.incumbent}` keeps serving."
        elif action == "promote":
            t = await self.trials.promote(by)
            await self._audit(interaction, "/adapter trial promote", f"trial #{t.id}: {t.candidate}")
            text = f"Trial #{t.id}: `{t.candidate}` promoted by hand and now serving."
        else:
            status = await self.trials.check() or await self.trials.status()  # acts on a verdict already reached
            text = status.text() if status else "No A/B trial has run yet."
        await say(interaction, text, ephemeral=True)

    @use.autocomplete("name")
    @info.autocomplete("name")
    async def _names(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        if not await is_operator(interaction, self.settings.discord):
            return []  # adapter names are operators' business
        names = [i.name for i in self.adapters.list() if current.lower() in i.name.lower()]
        return [app_commands.Choice(name=n, value=n) for n in reversed(names[-25:])]


async def setup(bot: KilroyBot) -> None:
    s = bot.services
    await bot.add_cog(Adapters(settings=s.settings, adapters=s.serving, storage=s.storage, bot=bot, trials=s.trials))
