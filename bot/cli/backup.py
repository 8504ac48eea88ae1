"""`kilroy backup` and `kilroy restore`."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from bot.cli.common import CommandFactory
from bot.config.settings import Settings

log = logging.getLogger("kilroy")


def cmd_backup(settings: Settings, args: argparse.Namespace) -> int:
    """Write a consistent, checked snapshot (database, adapters, pointer, manifest) into a new folder."""
    import sqlite3

    from bot.ops.backup import BackupError, DamagedDatabase, backup

    try:
        result = backup(settings, Path(args.path))
    except DamagedDatabase as exc:  # the live database: a failure, not bad input (exit 1)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except BackupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (OSError, sqlite3.Error) as exc:  # a full disk, an unreadable folder: a message, never a traceback
        print(f"error: the backup failed and nothing was written: {exc}", file=sys.stderr)
        return 1
    print(
        f"backup written to {result.path}: {result.files} files, {result.bytes / 1e6:.1f} MB, "
        f"adapters {', '.join(result.adapters) or 'none'} ({result.seconds:.1f}s)"
    )
    return 0


def cmd_restore(settings: Settings, args: argparse.Namespace) -> int:
    """Verify a backup and put it in place, all or nothing; refuses while a bot or a training runs."""
    import sqlite3

    from bot.ops.backup import BackupError, verify
    from bot.ops.restore import restore

    try:
        if args.check:
            manifest = verify(Path(args.path))
            print(f"{args.path}: manifest and integrity ok ({manifest.get('posts', 0)} posts, {manifest['created']})")
            return 0
        manifest = restore(settings, Path(args.path))
    except BackupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (OSError, sqlite3.Error) as exc:
        print(f"error: the restore failed ({exc}); run `kilroy doctor` to see the install's state", file=sys.stderr)
        return 1
    if manifest.get("recovered"):
        print(manifest["recovered"])
    opt_outs = manifest.get("opt_outs")
    carried = (
        "no live database to carry opt-outs from"
        if opt_outs is None
        else f"{opt_outs['members forgotten']} forgotten member(s) forgotten again, "
        f"{opt_outs['opt-outs carried']} opt-out(s) carried"
    )
    print(
        f"restored {args.path} ({manifest.get('posts', 0)} posts, serving {manifest.get('current')}); {carried}; "
        f"moved aside: {', '.join(manifest['moved_aside']) or 'nothing'}"
    )
    if opt_outs and opt_outs.get("opt-outs not carried"):
        print(
            f"warning: {opt_outs['opt-outs not carried']} opt-out(s) of the replaced database could not be carried "
            "(it was another database: its keyed hashes name nobody in this one)",
            file=sys.stderr,
        )
    return 0


def add_parser(command: CommandFactory) -> None:
    """Declare the subcommand and its options."""
    b = command(
        "backup",
        "write a consistent snapshot of the database, adapters and pointer",
        "Write a backup into a new folder while the bot runs: the database (SQLite online backup, checked with\n"
        "PRAGMA integrity_check before the backup counts), the adapter versions the pointer's history names,\n"
        "STATE.json, and manifest.json with a SHA-256 per file. Files 0600, folders 0700. A damaged database\n"
        "writes nothing and exits 1.",
    )
    b.add_argument("path", help="the new backup folder (must not exist or be empty)")

    rs = command(
        "restore",
        "verify a backup and put it in place (the bot must be stopped)",
        "Verify the whole backup (plain names, no links, checksums, PRAGMA integrity_check), then restore it all\n"
        "or nothing: staged beside the live files, then renamed in. Members who used /forget-me since the backup\n"
        "are forgotten again. Refuses while a bot or a training holds its lock. Replaced files are moved aside\n"
        "(*.replaced-<time>), never deleted.",
    )
    rs.add_argument("path", help="a folder written by `kilroy backup`")
    rs.add_argument("--check", action="store_true", help="only verify the backup; change nothing")
