"""`kilroy doctor`: check the setup; it reports bad settings as a failed check instead of stopping at them."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from bot.cli.common import CommandFactory

if TYPE_CHECKING:
    pass

log = logging.getLogger("kilroy")


def cmd_doctor(env_file: str, overrides: dict[str, str], *, json_output: bool) -> int:
    """Run every check and print one line each (or JSON); 0 only when all pass."""
    from bot.ops import doctor

    return doctor.main(env_file, overrides, json_output=json_output)


def add_parser(command: CommandFactory) -> None:
    """Declare the subcommand and its options."""
    d = command(
        "doctor",
        "check the setup: settings, token, database, adapters, model cache, disk, torch, HTTP port",
        "Check the setup, one line per check with the fix for each failure. Exit status 0 only when all pass.",
    )
    d.add_argument(
        "--json", action="store_true", help='print {"ok": bool, "checks": [{"name", "ok", "detail", "fix"}]}'
    )
