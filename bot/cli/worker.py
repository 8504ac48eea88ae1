"""`kilroy worker`: runs training jobs from the queue (KILROY_TRAINING_QUEUE=postgres), here or on a GPU machine."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from bot.cli.common import CommandFactory
from bot.config.settings import Settings

log = logging.getLogger("kilroy")


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    """Take training jobs from PostgreSQL until stopped (or, with --once, until the queue is empty)."""
    if not settings.database_url:
        print(
            "error: kilroy worker takes its jobs from PostgreSQL: set KILROY_DATABASE_URL (the bot's database) and\n"
            "  KILROY_ADAPTERS_DIR (the adapters folder the bots share); see README, 'Training on another machine'.",
            file=sys.stderr,
        )
        return 2
    from bot.services import open_worker_services
    from bot.training.queue_worker import run_worker

    async def go() -> int:
        async with open_worker_services(settings) as services:
            await run_worker(
                settings,
                services.runner_for,
                name=args.name,
                once=args.once,
                ready=lambda: log.info("worker ready: training jobs from %s", settings.database_shown),
            )
        return 0

    return asyncio.run(go())


def add_parser(command: CommandFactory) -> None:
    """Declare the subcommand and its options."""
    w = command(
        "worker",
        "run training jobs from the queue (KILROY_TRAINING_QUEUE=postgres)",
        "Take training jobs that the bots enqueue (nightly, /retrain) from PostgreSQL (KILROY_DATABASE_URL) and run\n"
        "them one at a time: train, gate, promote into the shared KILROY_ADAPTERS_DIR; every bot then hot-swaps.\n"
        "SIGINT/SIGTERM stop it after the running job. A worker that dies mid-job has its job retried once.",
    )
    w.add_argument("--name", default=None, help="this worker's name in the queue (default: host:pid)")
    w.add_argument("--once", action="store_true", help="stop once the queue is empty")
