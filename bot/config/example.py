"""`.env.example`, written from the declarations: `python -m bot.config.example > .env.example`."""

from __future__ import annotations

import sys
import textwrap

from bot.config.env import SECTION, default_of, walk
from bot.config.settings import Settings

WIDTH = 118  # the longest comment line, "# " included
RULE = 109  # the width of a section's title line

HEADER = """\
# Kilroy settings. Copy to .env and fill in. Every value shown is the default.
# Environment variables override .env. Invalid values stop the bot at start with a message naming the variable.
# Written from bot/config/settings.py by `python -m bot.config.example > .env.example`: change a setting there.
"""


def _title(text: str) -> str:
    head = f"# --- {text} "
    return head + "-" * (RULE - len(head))


def _comment(text: str, tail: str) -> list[str]:
    """`text` wrapped as comment lines, then `tail` (kept whole) on the last line if it fits, else on its own."""
    lines = textwrap.wrap(text, WIDTH - 2, break_long_words=False, break_on_hyphens=False)
    if tail and lines and len(lines[-1]) + 1 + len(tail) <= WIDTH - 2:
        lines[-1] += " " + tail
    elif tail:
        lines.append(tail)
    return ["# " + line for line in lines]


def render() -> str:
    """The text of `.env.example`: each setting's help (with its range, for a number) above `NAME=default`."""
    lines = [HEADER.rstrip("\n")]
    for _path, f, spec in walk(Settings):
        if spec is None:  # a section
            lines += ["", _title(f.metadata[SECTION])]
            continue
        if spec.heading:
            lines += ["", _title(spec.heading)]
        lines += _comment(spec.help, f"Between {spec.lo} and {spec.hi}." if spec.kind.numeric else "")
        value = spec.shown if spec.shown is not None else spec.kind.show(default_of(f))
        lines.append(f"{spec.env}={value}")
    return "\n".join(lines) + "\n"


def main() -> None:
    """Write `.env.example` to stdout."""
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
