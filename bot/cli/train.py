"""`kilroy train`: one training run over the database, through the bot's own lock, gate and promotion."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from typing import TYPE_CHECKING

from bot.cli.common import CommandFactory, ProgressBar
from bot.config.settings import Settings

if TYPE_CHECKING:
    from bot.training.result import Progress

log = logging.getLogger("kilroy")


def cmd_train(settings: Settings, args: argparse.Namespace) -> int:
    """One training run over the database, through the same lock and promotion sequence as the bot."""
    from bot.services import open_shell_services
    from bot.training.runner import TrainingBusy, TrainingFailed

    bar = ProgressBar("training")

    def on_progress(e: Progress) -> None:
        if e.kind == "progress" and e.stage == "train":
            bar.update(e.step or 0, e.of or 1, f"loss {e.loss or 0.0:+.3f}")
        elif e.kind == "progress" and e.stage == "evaluate":
            bar.close()
            print("evaluating the candidate...", file=sys.stderr)

    async def go() -> int:
        # no live model here: a promoted adapter's files are checked and the pointer moves; a bot started later
        # serves it; with A/B trials on, a gate-passing candidate waits for the bot (bot/services.py)
        async with open_shell_services(settings) as services:
            try:
                runner = services.communities.runner(args.community) if args.community else services.training
                result = await runner.run("cli", on_progress)
            except TrainingBusy as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
            except TrainingFailed as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
        if args.json:
            print(json.dumps(result.as_event(), indent=2))
        elif result.status == "skipped":
            print(f"nothing to train: {result.reason}")
        else:
            verdict = (
                "promoted (now active)"
                if result.promoted
                else "passed the gate; its A/B trial starts with the bot"
                if result.accepted and settings.trials.share > 0
                else "refused by the gate (kept on disk, NOT served)"
            )
            print(f"adapter {result.adapter} (parent {result.parent}): {verdict}: {result.reason}")
            for key, value in sorted(result.metrics.items()):
                print(f"  {key:<18} {value:.4f}")
        return 0

    return asyncio.run(go())


def add_parser(command: CommandFactory) -> None:
    """Declare the subcommand and its options."""
    t = command(
        "train",
        "one training run over the database; promotes only if the gate passes",
        "One training run over the settled, untrained posts in the database, through the same lock, gate and\n"
        "promotion sequence as the bot's nightly run.",
    )
    t.add_argument("--json", action="store_true", help="print the result as JSON")
    t.add_argument(
        "--community",
        type=_community,
        help="train this lineage on its own posts: g<server id> (e.g. g123); default: the commons",
    )


def _community(text: str) -> str:
    from bot.domain.community import InvalidCommunity, validate_community

    try:
        return validate_community(text)
    except InvalidCommunity as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
