"""The Discord application: `KilroyBot`, its intents, extensions, command sync and the one app-command error handler.

This module and `cogs/` are the only places that import discord.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.app.checks import to_log_channel
from bot.app.errors import user_message
from bot.config.settings import Settings
from bot.domain.safety import Cooldowns, guild_allowed
from bot.domain.shards import owns_guild, runs_database_jobs
from bot.http.health import GatewayState, ShardState
from bot.http.metrics import Metrics
from bot.logs import bind_log_context
from bot.services import Services

log = logging.getLogger(__name__)

SYNC_MARKER = "commands.sha256"  # under the data dir: the hash of the last synced command tree
EXTENSIONS = (
    "cogs.posting",
    "cogs.engagement",
    "cogs.story",
    "cogs.training",
    "cogs.adapters",
    "cogs.stats",
    "cogs.privacy",
    "cogs.commons",
)


def intents() -> discord.Intents:
    """Guilds, guild messages (replies) and reactions. Message *content* is not needed: replies are recognised by
    their reference; the only members' words Kilroy keeps are story lines given to it through commands."""
    i = discord.Intents.none()
    i.guilds = True
    i.guild_messages = True
    i.guild_reactions = True
    i.members = False
    return i


class KilroyTree(app_commands.CommandTree):
    """The command tree's gate, run before every command: the server allowlist, then per-member cooldowns."""

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        settings: Settings = self.client.settings  # type: ignore[attr-defined]
        is_command = interaction.type is discord.InteractionType.application_command
        # this check, the command and its error handler run in one task (discord.py's invoker): every line they log
        # names the server, channel and command (never the member: bot/logs.py)
        command = interaction.command.qualified_name if interaction.command is not None else None
        bind_log_context(guild=interaction.guild_id, channel=interaction.channel_id, command=command)
        if interaction.guild_id is None:
            if not is_command:
                return False  # an autocomplete cannot be answered with a message
            raise app_commands.NoPrivateMessage("Kilroy's commands work only inside a server.")
        if not guild_allowed(interaction.guild_id, settings.discord.guild_ids):
            return False  # a server outside KILROY_GUILD_IDS: answer nothing
        if not is_command or interaction.command is None:
            return True  # autocomplete does not take a cooldown
        # taken synchronously, before any await: five simultaneous /story line from one member, one passes
        name = interaction.command.qualified_name
        seconds = settings.story.cooldown_seconds if name == "story line" else settings.safety.command_cooldown_seconds
        cooldowns: Cooldowns = self.client.cooldowns  # type: ignore[attr-defined]
        retry = cooldowns.take((interaction.user.id, name), seconds, time.monotonic())
        if retry is not None:
            raise app_commands.CommandOnCooldown(app_commands.Cooldown(1, seconds), retry)
        return True


class KilroyBot(commands.AutoShardedBot):
    """The bot: owns the services; cogs get them in `setup`. It never pings: every message it sends, edits or
    follows up carries `AllowedMentions.none()`.

    It runs discord.py's AutoShardedBot: KILROY_SHARD_COUNT and KILROY_SHARD_IDS choose the shards this process
    holds; unset, Discord recommends the count and this process holds them all (one shard for a small bot)."""

    def __init__(self, settings: Settings, services: Services, **options: Any) -> None:
        shards = settings.shards
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents(),
            help_command=None,
            allowed_mentions=discord.AllowedMentions.none(),
            tree_cls=KilroyTree,
            shard_count=shards.count,
            shard_ids=list(shards.ids) or None,
            **options,
        )
        self.settings = settings
        self.services = services
        self.cooldowns = Cooldowns()
        self.metrics: Metrics | None = services.metrics  # when the HTTP server runs
        self._shard_up: dict[int, bool] = {}  # per shard: READY seen on its current socket, no disconnect since
        self._shard_ready: dict[int, bool] = {}  # per shard: its guilds loaded (shard_ready) or its session resumed
        services.hooks.plug(gateway=self.gateway_state, announce=self.announce)

    def owns_guild(self, guild_id: int) -> bool:
        """True if this process holds the server's shard (its posts and catch-up are ours)."""
        return owns_guild(guild_id, self.settings.shards)

    @property
    def runs_database_jobs(self) -> bool:
        """True if this process runs the database-wide jobs (it holds shard 0, or every shard)."""
        return runs_database_jobs(self.settings.shards)

    def held_shards(self) -> list[int]:
        """The shards this process holds; empty until Discord has said how many there are (no KILROY_SHARD_COUNT)."""
        if self.shard_ids:
            return sorted(self.shard_ids)
        return list(range(self.shard_count)) if self.shard_count else []

    def gateway_state(self) -> GatewayState:
        """The gateway as /healthz reports it: every shard this process holds connected and ready, with each
        shard's own state (connected, ready, heartbeat latency, servers)."""
        guilds = Counter(g.shard_id for g in self.guilds)
        shards = []
        for shard_id in self.held_shards():
            info = self.get_shard(shard_id)
            connected = self._shard_up.get(shard_id, False) and info is not None and not info.is_closed()
            latency = _milliseconds(info.latency) if info is not None else None
            ready = connected and self._shard_ready.get(shard_id, False)
            shards.append(ShardState(shard_id, connected, ready, latency, guilds.get(shard_id, 0)))
        connected = bool(shards) and not self.is_closed() and all(s.connected for s in shards)
        ready = connected and self.is_ready() and all(s.ready for s in shards)
        down = [s.id for s in shards if not s.connected]
        detail = ""
        if shards and 0 < len(down) < len(shards):
            detail = f"shard {', '.join(map(str, down))} not connected to the Discord gateway"
        return GatewayState(
            connected, ready, _milliseconds(self.latency), detail, shards=tuple(shards), shard_count=self.shard_count
        )

    async def announce(self, text: str, guild_id: int | None = None) -> None:
        """A line in the server's log channel (trial starts and decisions; KILROY_LOG_CHANNEL_ID without a server or
        without a log channel of its own); failures are only logged."""
        await to_log_channel(self, self.settings.discord, text, guild_id=guild_id)

    async def on_shard_connect(self, shard_id: int) -> None:
        self._shard_up[shard_id] = True

    async def on_shard_disconnect(self, shard_id: int) -> None:
        if self._shard_up.get(shard_id):
            log.warning("shard %d disconnected from the Discord gateway; reconnecting", shard_id)
        self._shard_up[shard_id] = self._shard_ready[shard_id] = False

    async def on_shard_ready(self, shard_id: int) -> None:
        self._shard_up[shard_id] = self._shard_ready[shard_id] = True

    async def on_shard_resumed(self, shard_id: int) -> None:
        self._shard_up[shard_id] = self._shard_ready[shard_id] = True

    async def on_app_command_completion(self, interaction: discord.Interaction, command: Any) -> None:
        if self.metrics is not None:
            self.metrics.command(command.qualified_name, "ok")

    async def setup_hook(self) -> None:
        self.tree.on_error = self.on_app_command_error
        for ext in EXTENSIONS:
            await self.load_extension(ext)
        for command in self.tree.get_commands():
            command.guild_only = True  # not offered in DMs (the tree refuses them anyway)
        if self.runs_database_jobs:  # the commands are the application's, not a shard's: one process syncs them
            await self.sync_commands()

    def allowed_guild(self, guild_id: int | None) -> bool:
        """True if Kilroy works in this server (KILROY_GUILD_IDS, or every server when it is empty)."""
        return guild_allowed(guild_id, self.settings.discord.guild_ids)

    async def on_guild_join(self, guild: discord.Guild) -> None:
        await self._leave_if_not_allowed(guild)

    async def _leave_if_not_allowed(self, guild: discord.Guild) -> None:
        if self.allowed_guild(guild.id):
            return
        if self.settings.safety.leave_other_guilds:
            log.warning("leaving server %s: it is not in KILROY_GUILD_IDS", guild.id)
            await guild.leave()
        else:
            log.warning("in server %s, which is not in KILROY_GUILD_IDS: answering and recording nothing", guild.id)

    async def sync_commands(self) -> None:
        """Sync slash commands only when they changed (Discord rate-limits command creation)."""
        payload = json.dumps([c.to_dict(self.tree) for c in self.tree.get_commands()], sort_keys=True, default=str)
        guilds = self.settings.discord.guild_ids
        digest = hashlib.sha256((payload + repr(guilds)).encode()).hexdigest()
        marker = Path(self.settings.data_dir) / SYNC_MARKER
        if marker.exists() and marker.read_text().strip() == digest:
            log.info("slash commands unchanged; not syncing")
            return
        if guilds:
            for gid in guilds:
                guild = discord.Object(id=gid)
                self.tree.copy_global_to(guild=guild)
                await self.tree.sync(guild=guild)
            # commands synced globally while the allowlist was empty would show twice in those servers: clear
            # Discord's global set (the servers' copies keep answering), then put the local tree back as it was
            global_commands = self.tree.get_commands()
            self.tree.clear_commands(guild=None)
            try:
                await self.tree.sync()
            finally:
                for command in global_commands:
                    self.tree.add_command(command)
            log.info("synced slash commands to %d server(s); no global commands", len(guilds))
        else:
            await self.tree.sync()
            log.info("synced slash commands globally (they can take up to an hour to appear)")
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(digest)

    async def on_ready(self) -> None:
        log.info(
            "logged in as %s (%s) in %d server(s) on shard(s) %s of %s",
            self.user,
            getattr(self.user, "id", "?"),
            len(self.guilds),
            ",".join(map(str, self.held_shards())),
            self.shard_count,
        )
        if not self.settings.discord.guild_ids:
            log.warning("KILROY_GUILD_IDS is empty: Kilroy works in every server it is invited to")
        for guild in list(self.guilds):
            await self._leave_if_not_allowed(guild)

    async def on_app_command_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        """Expected errors become an ephemeral message; bugs are logged with context and get a short apology."""
        if self.metrics is not None and interaction.command is not None:
            self.metrics.command(interaction.command.qualified_name, command_outcome(error))
        await handle_app_command_error(interaction, error)


def _milliseconds(seconds: float) -> float | None:
    """A discord.py latency in ms; None before the first heartbeat is answered (nan or inf)."""
    return seconds * 1000 if seconds == seconds and seconds != float("inf") else None


def command_outcome(error: BaseException) -> str:
    """How a failed command is counted: refused (permission, cooldown), user_error (explained) or error (a bug)."""
    if isinstance(error, app_commands.CheckFailure | app_commands.CommandOnCooldown):
        return "refused"
    return "user_error" if user_message(getattr(error, "original", error)) is not None else "error"


async def handle_app_command_error(interaction: discord.Interaction, error: BaseException) -> None:
    """Answer an app command that failed (also used by tests)."""
    original = getattr(error, "original", error)
    refusal = True  # addressed to the member, perhaps about them ("you asked Kilroy to forget you"): private
    if isinstance(error, app_commands.CommandOnCooldown):
        text = f"Slow down: try again in {max(1.0, error.retry_after):.0f}s."
    elif isinstance(error, app_commands.CheckFailure):
        text = str(error) or "You are not allowed to use this command."
    elif (msg := user_message(original)) is not None:
        text = msg
    else:
        refusal = False
        command = interaction.command.qualified_name if interaction.command else "?"
        log.error(
            "command /%s failed for user %s in channel %s",
            command,
            interaction.user.id,
            interaction.channel_id,
            exc_info=original,
        )
        text = "Sorry, something went wrong on my side. It has been logged."
    try:
        none = discord.AllowedMentions.none()
        if interaction.response.is_done():
            if refusal and interaction.response.type is discord.InteractionResponseType.deferred_channel_message:
                # after a "thinking" defer the first followup replaces that message, and Discord keeps the defer's
                # visibility whatever `ephemeral` says: remove it so the refusal goes out as a new private message
                with contextlib.suppress(discord.HTTPException):
                    await interaction.delete_original_response()
            await interaction.followup.send(text, ephemeral=True, allowed_mentions=none)
        else:
            await interaction.response.send_message(text, ephemeral=True, allowed_mentions=none)
    except discord.HTTPException:
        log.warning("could not report an error to the user", exc_info=True)


async def run_bot(settings: Settings) -> int:
    """Open the bot's services, log in, run until stopped (Ctrl-C or SIGTERM); close everything cleanly.

    The HTTP server starts first, so /healthz answers 503 "starting" while the model loads, and stops last.
    """
    from bot.services import CannotStart, open_bot_services

    try:
        async with open_bot_services(settings) as services, KilroyBot(settings, services) as bot:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):  # non-Unix loops
                    loop.add_signal_handler(sig, lambda: asyncio.create_task(bot.close()))
            try:
                await bot.start(settings.discord.token.get())
            except discord.LoginFailure:
                log.error("Discord refused the token: check DISCORD_TOKEN in .env (Bot -> Reset Token)")
                return 2
    except CannotStart as exc:
        log.error("%s", exc)
        return 2
    log.info("stopped cleanly")
    return 0
