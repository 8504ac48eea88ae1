"""/adapter list|use|rollback|info|trial for operators: switch LoRA adapters at run time, without a restart.

Scoped to the server where the command runs (issue 24): its own lineage (`adapters/g<guild id>/`), its pointer,
its trial. `use` takes a version of that lineage ("v0004", or "g123/v0004") or `base`; `list` also says what serves
the server now (its own adapter, or the commons' until its first one passes its gate). Another server's adapters
are neither listed nor usable.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.adapters.serving import AdapterService
from bot.adapters.store import AdapterError, AdapterInfo
from bot.app.checks import NotAllowed, audit, is_operator, say
from bot.config.settings import Settings
from bot.domain.community import community_id, parse_ref
from bot.storage import Storage
from bot.trials.service import NoTrial, TrialService

if TYPE_CHECKING:
    from bot.app.bot import KilroyBot
    from bot.services import Communities


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
        communities: Communities | None = None,
    ) -> None:
        self.settings, self.adapters, self.storage, self.bot = settings, adapters, storage, bot
        self.trials = trials
        self.communities = communities  # None: one flat store (the command is then not scoped)
        super().__init__()

    def _community(self, interaction: discord.Interaction) -> str | None:
        if self.communities is None or interaction.guild_id is None:
            return None
        return community_id(interaction.guild_id)

    def _serving(self, interaction: discord.Interaction) -> AdapterService:
        community = self._community(interaction)
        return self.adapters if community is None or self.communities is None else self.communities.serving(community)

    def _trials(self, interaction: discord.Interaction) -> TrialService | None:
        community = self._community(interaction)
        return self.trials if community is None or self.communities is None else self.communities.trials(community)

    def _version(self, interaction: discord.Interaction, name: str) -> str:
        """A version of this server's lineage, from "v0004", "g123/v0004" or "base"; another's is refused."""
        community = self._community(interaction)
        if community is None or "/" not in name:
            return name
        try:
            owner, version = parse_ref(name)
        except ValueError as exc:
            raise AdapterError(str(exc)) from None
        if owner != community:
            raise AdapterError(f"`{name}` belongs to another lineage; this server can use its own versions or base")
        return version

    async def _audit(self, interaction: discord.Interaction, action: str, detail: str = "") -> None:
        if self.bot is not None:
            await audit(self.bot, interaction, action, detail, storage=self.storage, settings=self.settings.discord)

    async def _require_operator(self, interaction: discord.Interaction) -> None:
        if not await is_operator(interaction, self.settings.discord):
            raise NotAllowed("Only Kilroy's operators can manage adapters.")

    @app_commands.command(name="list", description="List adapter versions")
    async def list_(self, interaction: discord.Interaction) -> None:
        await self._require_operator(interaction)
        infos = self._serving(interaction).list()[-20:]
        lines = [_line(i) for i in infos]
        community = self._community(interaction)
        if community is not None and self.communities is not None:
            lines.insert(0, f"`{community}` is served by `{self.communities.lineages.serving(community)}`")
        await say(interaction, "\n".join(lines), ephemeral=True)

    @app_commands.command(name="info", description="Show one adapter's metadata")
    async def info(self, interaction: discord.Interaction, name: str) -> None:
        await self._require_operator(interaction)
        i = self._serving(interaction).info(self._version(interaction, name))
        gate = i.meta.get("gate", "")
        await say(interaction, f"{_line(i)}\nparent `{i.parent}` · {gate}", ephemeral=True)

    @app_commands.command(name="use", description="Serve another adapter now")
    async def use(self, interaction: discord.Interaction, name: str) -> None:
        await self._require_operator(interaction)
        await interaction.response.defer(ephemeral=True, thinking=True)  # loading from disk may take a moment
        took = await self._serving(interaction).use(self._version(interaction, name))
        await self._audit(interaction, "/adapter use", name)
        await say(interaction, f"Now serving `{name}` (switched in {took * 1000:.0f} ms).", ephemeral=True)

    @app_commands.command(name="rollback", description="Go back to the previously served adapter")
    async def rollback(self, interaction: discord.Interaction) -> None:
        await self._require_operator(interaction)
        await interaction.response.defer(ephemeral=True, thinking=True)
        name = await self._serving(interaction).rollback()
        await self._audit(interaction, "/adapter rollback", f"now {name}")
        await say(interaction, f"Rolled back: now serving `{name}`.", ephemeral=True)

    @app_commands.command(name="trial", description="The A/B trial: show it, stop it (keep the incumbent), promote")
    async def trial(
        self, interaction: discord.Interaction, action: Literal["show", "stop", "promote"] = "show"
    ) -> None:
        await self._require_operator(interaction)
        trials = self._trials(interaction)
        if trials is None:
            raise NoTrial()
        await interaction.response.defer(ephemeral=True, thinking=True)  # promoting loads an adapter
        by = f"user:{interaction.user.id}"  # recorded with the trial
        if action == "stop":
            t = await trials.stop(by)
            await self._audit(interaction, "/adapter trial stop", f"trial #{t.id}")
            text = f"Trial #{t.id} stopped: `{t.incumbent}` keeps serving."
        elif action == "promote":
            t = await trials.promote(by)
            await self._audit(interaction, "/adapter trial promote", f"trial #{t.id}: {t.candidate}")
            text = f"Trial #{t.id}: `{t.candidate}` promoted by hand and now serving."
        else:
            status = await trials.check() or await trials.status()  # acts on a verdict already reached
            text = status.text() if status else "No A/B trial has run yet."
        await say(interaction, text, ephemeral=True)

    @use.autocomplete("name")
    @info.autocomplete("name")
    async def _names(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        if not await is_operator(interaction, self.settings.discord):
            return []  # adapter names are operators' business
        names = [i.name for i in self._serving(interaction).list() if current.lower() in i.name.lower()]
        return [app_commands.Choice(name=n, value=n) for n in reversed(names[-25:])]


async def setup(bot: KilroyBot) -> None:
    s = bot.services
    await bot.add_cog(
        Adapters(
            settings=s.settings,
            adapters=s.serving,
            storage=s.storage,
            bot=bot,
            trials=s.trials,
            communities=s.communities,
        )
    )
