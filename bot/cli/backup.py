"""`kilroy backup` and `kilroy restore`."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from bot.cli.common import CommandFactory
from bot.config.settings import Settings

if TYPE_CHECKING:
    pass

log = logging.getLogger("kilroy")


def cmd_backup(settings: Settings, args: argparse.Namespace) -> int:
    """Write a consistent snapshot (database, adapters, pointer, manifest) into a new folder."""
    from bot.ops.backup import BackupError, backup

    try:
        result = backup(settings, Path(args.path))
    except BackupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"backup written to {result.path}: {result.files} files, {result.bytes / 1e6:.1f} MB, "
        f"adapters {', '.join(result.adapters) or 'none'} ({result.seconds:.1f}s)"
    )
    return 0


def cmd_restore(settings: Settings, args: argparse.Namespace) -> int:
    """Verify a backup and put it in place; refuses while a bot or a training runs."""
    from bot.ops.backup import BackupError, restore, verify

    try:
        if args.check:
            manifest = verify(Path(args.path))
            print(f"{args.path}: manifest and integrity ok ({manifest.get('posts', 0)} posts, {manifest['created']})")
            return 0
        manifest = restore(settings, Path(args.path))
    except BackupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"restored {args.path} ({manifest.get('posts', 0)} posts, serving {manifest.get('current')}); "
        f"moved aside: {', '.join(manifest['moved_aside']) or 'nothing'}"
    )
    return 0


def add_parser(command: CommandFactory) -> None:
    """Declare the subcommand and its options."""
    b = command(
        "backup",
        "write a consistent snapshot of the database, adapters and pointer",
        "Write a backup into a new folder while the bot runs: the database (SQLite online backup), the adapter\n"
        "versions the pointer's history names, STATE.json, and manifest.json with a SHA-256 per file.",
    )
    b.add_argument("path", help="the new backup folder (must not exist or be empty)")

    rs = command(
        "restore",
        "verify a backup and put it in place (the bot must be stopped)",
        "Verify a backup (manifest checksums, PRAGMA integrity_check), then restore it. Refuses while a bot or a\n"
        "training holds its lock. Replaced files are moved aside (*.replaced-<time>), never deleted.",
    )
    rs.add_argument("path", help="a folder written by `kilroy backup`")
    rs.add_argument("--check", action="store_true", help="only verify the backup; change nothing")
