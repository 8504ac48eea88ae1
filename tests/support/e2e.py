"""Running the real bot against the fake Discord: shared by the end-to-end tests and the benchmarks."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import discord

from bot.app.bot import KilroyBot
from bot.services import open_services
from tests.support import fake_discord as fd


@contextlib.asynccontextmanager
async def running_bot(
    settings, server: fd.FakeDiscord, *, freeze_heap: bool = False, ready_timeout: float = 30
) -> AsyncIterator[KilroyBot]:
    """Start the real bot with a fake token; yield once it is ready; stop it cleanly. `freeze_heap` as `kilroy run`."""
    async with open_services(settings, freeze_heap=freeze_heap) as services:
        bot = KilroyBot(settings, services, guild_ready_timeout=0.05)
        async with bot:
            task = asyncio.create_task(bot.start("fake-token"))
            try:
                await asyncio.wait_for(bot.wait_until_ready(), ready_timeout)
                yield bot
            finally:
                await bot.close()
                with contextlib.suppress(asyncio.CancelledError, discord.ConnectionClosed):
                    await asyncio.wait_for(task, 10)


async def until(predicate: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:  # noqa: ASYNC109
    """Wait until an async predicate holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached in time")
