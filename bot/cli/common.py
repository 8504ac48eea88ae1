"""What the subcommands share: the progress bar, atomic writes, the help formatter."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

CommandFactory = Callable[[str, str, str], argparse.ArgumentParser]


class ProgressBar:
    """A progress bar on stderr (tqdm), redrawn in place on a terminal; off when stderr is not a terminal."""

    def __init__(self, label: str, stream: Any = None) -> None:
        from tqdm import tqdm

        self._bar = tqdm(desc=label, file=stream or sys.stderr, disable=None, unit="step", dynamic_ncols=True)

    def update(self, done: int, total: int, suffix: str = "") -> None:
        """Draw `done` of `total`."""
        if self._bar.total != total:
            self._bar.total = total
        self._bar.n = done
        self._bar.set_postfix_str(suffix, refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        """End the line."""
        self._bar.close()


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Show each option's default (when it has a value), and keep the descriptions' line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)
