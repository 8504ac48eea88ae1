"""`kilroy story`: story mode in the terminal (lines on stdin, answers on stdout)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import TextIO

from bot.cli.common import CommandFactory
from bot.config.settings import Settings

log = logging.getLogger("kilroy")


def cmd_story(settings: Settings, args: argparse.Namespace) -> int:
    """Story mode in the terminal: human lines on stdin, one `machine_director: ...` line each on stdout."""
    return asyncio.run(terminal_story(settings, opening=args.opening, stdin=sys.stdin, stdout=sys.stdout))


async def terminal_story(settings: Settings, *, opening: str | None, stdin: TextIO, stdout: TextIO) -> int:
    """The terminal loop, on the same StoryService as `/story`; prompts, logs and errors go to stderr."""
    import dataclasses

    from bot.domain.story import MACHINE
    from bot.services import open_services
    from bot.stories.service import StoryError

    # the terminal story lives in memory: it is play, not data for the server's training
    settings = settings.replace(db_path=Path(":memory:"), story=dataclasses.replace(settings.story, cooldown_seconds=0))
    interactive = stdin.isatty()
    async with open_services(settings) as services:
        story = await services.stories.start(0, opening=opening)
        print(f"{story.instruction}\n{story.opening}", file=sys.stderr)
        while True:
            if interactive:
                print("human_director: ", end="", file=sys.stderr, flush=True)
            raw = stdin.readline()
            if not raw:
                break
            if not raw.strip():
                continue
            try:
                turn = await services.stories.take_turn(0, None, raw)
            except StoryError as exc:
                print(f"error: {exc}", file=sys.stderr)
                continue
            print(f"{MACHINE}: {turn.text}", file=stdout, flush=True)
    return 0


def add_parser(command: CommandFactory) -> None:
    """Declare the subcommand and its options."""
    st = command(
        "story",
        "story mode in the terminal (lines on stdin, answers on stdout)",
        "Story mode in the terminal: each line read from standard input gets one machine_director line on\n"
        "standard output; prompts and logs go to standard error, so it pipes cleanly.",
    )
    st.add_argument("--opening", default=None, help="the story's opening (default: KILROY_STORY_OPENING)")
