"""`kilroy generate`: samples from the serving or a named adapter."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from typing import Any

from bot.cli.common import CommandFactory
from bot.config.settings import Settings

log = logging.getLogger("kilroy")


def cmd_generate(settings: Settings, args: argparse.Namespace) -> int:
    """Print samples from the current or a named adapter."""
    from bot.services import open_services

    if args.n < 1:
        print("error: -n must be at least 1", file=sys.stderr)
        return 2

    async def go() -> list[Any]:
        async with open_services(settings, adapter=args.adapter) as services:
            prompt = args.prompt if args.prompt is not None else settings.generation.prompt
            return await services.generator.generate(args.n, prompt=prompt, seed=args.seed)

    samples = asyncio.run(go())
    if args.json:
        print(
            json.dumps(
                {"samples": [{"text": s.text, "adapter": s.adapter, "tokens": s.tokens} for s in samples]},
                ensure_ascii=False,
            )
        )
    else:
        for s in samples:
            print(s.text)
    return 0


def add_parser(command: CommandFactory) -> None:
    """Declare the subcommand and its options."""
    g = command(
        "generate",
        "print samples from the current or a named adapter",
        "Print samples from the serving adapter (or a named one).",
    )
    g.add_argument("-n", type=int, default=1, help="how many samples")
    g.add_argument("--adapter", default=None, help="an adapter version to sample from (default: the serving one)")
    g.add_argument("--prompt", default=None, help="text to continue (default: KILROY_POST_PROMPT)")
    g.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    g.add_argument("--json", action="store_true", help='print {"samples": [{"text", "adapter", "tokens"}]}')
