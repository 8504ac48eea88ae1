"""The `kilroy` console script: parses arguments, reads Settings, and runs one subcommand (one module each here).

Heavy imports (torch, transformers, discord) happen inside the subcommands, so `kilroy --help` is instant.
Exit codes: 0 ok, 1 runtime failure, 2 bad input or configuration.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from bot.cli import adapters, backup, doctor, generate, migrate_db, run, simulate, story, train, worker
from bot.cli.common import HelpFormatter
from bot.config.settings import ConfigError, Settings, load_settings
from bot.logs import setup_logging

log = logging.getLogger("kilroy")


def version() -> str:
    """The installed package's version."""
    from importlib.metadata import PackageNotFoundError, version as dist_version

    try:
        return dist_version("kilroy")
    except PackageNotFoundError:  # running from a source tree that was not installed
        return "0.1.0+source"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand; every option has a help text and shows its default."""
    p = argparse.ArgumentParser(
        prog="kilroy",
        description="A Discord bot that learns what its community engages with.\n"
        "Settings come from the environment and an env file (every variable: .env.example).",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"kilroy {version()}")
    p.add_argument("--env-file", default=".env", help="read settings from this file too (the environment wins)")
    p.add_argument("--model", default=None, help="override KILROY_MODEL: gpt2, a local folder, or tiny (offline)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=summary, description=description, formatter_class=HelpFormatter)

    for module in (run, simulate, train, generate, adapters, story, backup, migrate_db, doctor, worker):
        module.add_parser(command)
    return p


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "run": run.cmd_run,
    "simulate": simulate.cmd_simulate,
    "train": train.cmd_train,
    "generate": generate.cmd_generate,
    "adapters": adapters.cmd_adapters,
    "story": story.cmd_story,
    "backup": backup.cmd_backup,
    "restore": backup.cmd_restore,
    "migrate-db": migrate_db.cmd_migrate_db,
    "worker": worker.cmd_worker,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `kilroy` console script."""
    args = build_parser().parse_args(argv)
    overrides = {}
    if args.model:
        overrides["KILROY_MODEL"] = args.model
    elif args.command in ("simulate", "story") and "KILROY_MODEL" not in os.environ:
        overrides["KILROY_MODEL"] = "tiny"  # the offline commands default to the offline model
    if args.command == "doctor":  # it reports bad settings as a failed check instead of stopping at them
        return doctor.cmd_doctor(args.env_file, overrides, json_output=args.json)
    try:
        settings = load_settings(args.env_file, overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, settings.ops.log_format)
    from bot.adapters.store import AdapterError
    from bot.sim.nights import AudienceError

    try:
        return COMMANDS[args.command](settings, args)
    except (AdapterError, AudienceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        from bot.engine.model import ModelLoadError

        if isinstance(exc, ModelLoadError):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        log.exception("%s failed", args.command)
        return 1


if __name__ == "__main__":
    sys.exit(main())
