"""Adapter switching for the running bot: the store decides what exists, the generator loads it.

The order makes a swap all-or-nothing: validate the name and files, load into the live model, and only then
move the store's `CURRENT` pointer. A failure anywhere leaves both the model and the pointer as they were.
"""

from __future__ import annotations

import asyncio
import logging

from bot.adapters import BASE, AdapterInfo, AdapterStore, NothingToRollBack
from bot.engine.generator import Generator

log = logging.getLogger(__name__)


class AdapterUnhealthy(Exception):
    """An adapter loaded but could not generate; the previous one keeps serving."""


class AdapterService:
    """List, use, roll back adapters on the live model, without a restart."""

    def __init__(self, store: AdapterStore, generator: Generator) -> None:
        self.store = store
        self.generator = generator
        self._lock = asyncio.Lock()

    @property
    def active(self) -> str:
        """The adapter serving now."""
        return self.generator.active

    async def restore(self) -> str:
        """At start: load the store's current adapter; fall back to `base` if it cannot be loaded."""
        name = self.store.current()
        if name == BASE:
            return BASE
        try:
            await self.use(name)
        except Exception:
            log.exception("could not load the active adapter %s at start; serving base", name)
        return self.generator.active

    async def activate(self, name: str) -> float:
        """Load `name` into the live model, make it active and health-check it with one short sample; the
        pointer does not move. On any failure the previous adapter is active again and the error is raised.
        Returns the switch time in seconds."""
        async with self._lock:
            return await self._activate(name)

    async def _activate(self, name: str) -> float:
        previous = self.generator.active
        path = None if name == BASE or self.generator.is_resident(name) else self.store.path(name)
        if name != BASE and path is None:
            self.store.path(name)  # resident, but still refuse one whose files vanished or broke
        took = await self.generator.use_adapter(name, path)
        try:
            await self.generator.generate(1, max_new_tokens=4, seed=0)
        except Exception as exc:
            log.error("adapter %s failed its health check (%s); back to %s", name, exc, previous)
            prev_path = None if previous == BASE or self.generator.is_resident(previous) else self.store.path(previous)
            await self.generator.use_adapter(previous, prev_path)
            raise AdapterUnhealthy(f"adapter {name} failed its health check: {exc}") from exc
        return took

    async def use(self, name: str) -> float:
        """Switch to `name` and move the pointer; return the switch time in seconds. Raises AdapterError,
        AdapterLoadError or AdapterUnhealthy with the serving adapter unchanged."""
        async with self._lock:
            took = await self._activate(name)
            self.store.set_current(name)
            return took

    async def rollback(self) -> str:
        """Switch back to the previously active adapter; return its name."""
        async with self._lock:
            previous = self.store.previous()
            if previous is None:
                raise NothingToRollBack()
            path = None if previous == BASE or self.generator.is_resident(previous) else self.store.path(previous)
            await self.generator.use_adapter(previous, path)
            self.store.rollback()
            return previous

    def list(self) -> list[AdapterInfo]:
        """All versions, with the active marker."""
        return self.store.list()

    def info(self, name: str) -> AdapterInfo:
        """One version's metadata."""
        return self.store.info(name)
