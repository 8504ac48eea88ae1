"""`kilroy run`: the Discord bot."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from bot.cli.common import CommandFactory
from bot.config.settings import Settings

log = logging.getLogger("kilroy")


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    """Run the Discord bot."""
    if not settings.discord.token:
        print(
            "error: DISCORD_TOKEN is not set.\n"
            "  Create an application and bot at https://discord.com/developers/applications, copy the bot token,\n"
            "  and put DISCORD_TOKEN=... in .env (see README, 'Run it on your server').\n"
            "  To see Kilroy learn without Discord, run: kilroy simulate",
            file=sys.stderr,
        )
        return 2
    from bot.app.bot import SYNC_MARKER, run_bot

    if args.sync:
        (settings.data_dir / SYNC_MARKER).unlink(missing_ok=True)
    return asyncio.run(run_bot(settings))


def add_parser(command: CommandFactory) -> None:
    """Declare the subcommand and its options."""
    r = command(
        "run",
        "run the Discord bot (needs DISCORD_TOKEN)",
        "Run the Discord bot: scheduled posts, engagement, stories, nightly training. With KILROY_HTTP_PORT set it\n"
        "also serves /healthz, /metrics and the dashboard. Stops cleanly on Ctrl-C or SIGTERM.",
    )
    r.add_argument("--sync", action="store_true", help="sync slash commands even if they look unchanged")
