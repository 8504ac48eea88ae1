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
from pathlib import Path
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.app.checks import to_log_channel
from bot.app.errors import user_message
from bot.config.settings import Settings
from bot.domain.safety import Cooldowns, guild_allowed
from bot.http.health import GatewayState
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


class KilroyBot(commands.Bot):
    """The bot: owns the services; cogs get them in `setup`. It never pings: every message it sends, edits or
    follows up carries `AllowedMentions.none()`."""

    def __init__(self, settings: Settings, services: Services, **options: Any) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents(),
            help_command=None,
            allowed_mentions=discord.AllowedMentions.none(),
            tree_cls=KilroyTree,
            **options,
        )
        self.settings = settings
        self.services = services
        self.cooldowns = Cooldowns()
        self.metrics: Metrics | None = services.metrics  # when the HTTP server runs
        self._gateway_connected = False  # READY seen on the current socket (on_connect) and no disconnect since
        self._session_ready = False  # guilds loaded (on_ready) or the session resumed
        services.hooks.plug(gateway=self.gateway_state, announce=self.announce)

    def gateway_state(self) -> GatewayState:
        """The gateway as /healthz reports it: connected, ready, heartbeat latency."""
        connected = self._gateway_connected and not self.is_closed() and self.ws is not None
        latency = self.latency
        latency_ms = latency * 1000 if latency == latency and latency != float("inf") else None
        return GatewayState(connected, connected and self._session_ready and self.is_ready(), latency_ms)

    async def announce(self, text: str) -> None:
        """A line in KILROY_LOG_CHANNEL_ID (trial starts and decisions); failures are only logged."""
        await to_log_channel(self, self.settings.discord, text)

    async def on_connect(self) -> None:
        self._gateway_connected = True

    async def on_disconnect(self) -> None:
        if self._gateway_connected:
            log.warning("disconnected from the Discord gateway; reconnecting")
        self._gateway_connected = False
        self._session_ready = False

    async def on_resumed(self) -> None:
        self._gateway_connected = self._session_ready = True

    async def on_app_command_completion(self, interaction: discord.Interaction, command: Any) -> None:
        if self.metrics is not None:
            self.metrics.command(command.qualified_name, "ok")

    async def setup_hook(self) -> None:
        self.tree.on_error = self.on_app_command_error
        for ext in EXTENSIONS:
            await self.load_extension(ext)
        for command in self.tree.get_commands():
            command.guild_only = True  # not offered in DMs (the tree refuses them anyway)
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
        self._gateway_connected = self._session_ready = True
        log.info("logged in as %s (%s) in %d server(s)", self.user, getattr(self.user, "id", "?"), len(self.guilds))
        if not self.settings.discord.guild_ids:
            log.warning("KILROY_GUILD_IDS is empty: Kilroy works in every server it is invited to")
        for guild in list(self.guilds):
            await self._leave_if_not_allowed(guild)

    async def on_app_command_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        """Expected errors become an ephemeral message; bugs are logged with context and get a short apology."""
        if self.metrics is not None and interaction.command is not None:
            self.metrics.command(interaction.command.qualified_name, command_outcome(error))
        await handle_app_command_error(interaction, error)


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
