"""`kilroy migrate-db --to postgresql://...`: copy the SQLite install into PostgreSQL and verify it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bot.cli.common import CommandFactory
from bot.config.settings import Settings


def cmd_migrate_db(settings: Settings, args: argparse.Namespace) -> int:
    """Copy every table of the SQLite database into an empty PostgreSQL database, then compare them."""
    from bot.config.env import DATABASE_URL, hide_password
    from bot.ops.backup import RunLock
    from bot.ops.migrate_db import MigrateError, migrate
    from bot.training.lock import TrainingBusy

    target = args.to or settings.database_url.get()
    if not target:
        print("error: name the PostgreSQL database: --to postgresql://USER:PASSWORD@HOST:5432/DBNAME, or set "
              "KILROY_DATABASE_URL (which keeps the password off the command line)", file=sys.stderr)  # fmt: skip
        return 2
    try:
        DATABASE_URL.parse(target, None)  # type: ignore[arg-type]
    except ValueError as exc:
        print(f"error: --to {hide_password(target)!r} is not a PostgreSQL URL ({exc})", file=sys.stderr)
        return 2
    source = Path(args.source or settings.db_path)
    run = RunLock(settings.data_dir)
    try:
        run.acquire("kilroy migrate-db")
    except TrainingBusy:
        print(f"error: a Kilroy bot is running on this data ({run.holder() or 'unknown'}); stop it first: rows it "
              "writes during the copy would be lost", file=sys.stderr)  # fmt: skip
        return 2
    try:
        result = migrate(source, target, progress=lambda line: print(f"  {line}", file=sys.stderr))
    except MigrateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        run.release()
    rows = sum(result.counts.values())
    if result.already:
        print(f"{hide_password(target)} already holds {source} ({rows} rows in {len(result.counts)} tables): nothing "
              "written")  # fmt: skip
        return 0
    print(f"copied {source} into {hide_password(target)}: {rows} rows in {len(result.counts)} tables, every count "
          f"and sampled row verified ({result.seconds:.1f}s)")  # fmt: skip
    if not settings.database_url:
        print("next: set KILROY_DATABASE_URL to this URL in .env, then start the bot")
    return 0


def add_parser(command: CommandFactory) -> None:
    """Declare the subcommand and its options."""
    m = command(
        "migrate-db",
        "copy the SQLite database into PostgreSQL and verify the copy",
        "Copy every table of the SQLite database (KILROY_DB_PATH) into an empty PostgreSQL database, in one\n"
        "transaction, then verify it: every table's row count and its first and last rows. The bot must be\n"
        "stopped. A target that already holds exactly this copy is left alone (exit 0); any other non-empty\n"
        "target is refused. Afterwards, set KILROY_DATABASE_URL to the URL.",
    )
    m.add_argument(
        "--to", default=None, help="postgresql://USER:PASSWORD@HOST:5432/DBNAME (default: KILROY_DATABASE_URL)"
    )
    m.add_argument("--from", dest="source", default=None, help="the SQLite file (default: KILROY_DB_PATH)")
