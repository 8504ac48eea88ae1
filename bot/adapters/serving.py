"""Adapter switching for the running bot: the store decides what exists, the generator loads it.

The order makes a swap all-or-nothing: validate the name and files, load into the live model, and only then
move the store's `CURRENT` pointer. A failure anywhere leaves both the model and the pointer as they were.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path

from bot.adapters.store import BASE, AdapterInfo, AdapterStore, NothingToRollBack
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
        """At start: serve the store's current adapter; if it is broken, the last good one in the history, loudly.

        The pointer then names what really serves (the broken version stays on disk for an operator to inspect).
        """
        name = self.store.current()
        if name == BASE:
            return BASE
        try:
            await self.use(name)
            return self.generator.active
        except Exception as exc:
            log.error("ADAPTER %s IS BROKEN and cannot serve (%s); falling back to the last good one", name, exc)
        for candidate in reversed(self.store.history()):
            if candidate == name:
                continue
            try:
                async with self._lock:
                    await self._activate(candidate)
            except Exception as exc:
                log.error("fallback candidate %s is broken too (%s)", candidate, exc)
                continue
            self.store.fall_back_to(candidate)
            log.error("SERVING %s INSTEAD OF THE BROKEN %s: fix or remove it, then /adapter use", candidate, name)
            return candidate
        self.store.fall_back_to(BASE)
        log.error("no good adapter in the history: serving the base model instead of the broken %s", name)
        return self.generator.active

    async def activate(self, name: str) -> float:
        """Load `name` into the live model, make it active and health-check it with one short sample; the
        pointer does not move. On any failure the previous adapter is active again and the error is raised.
        Returns the switch time in seconds."""
        async with self._lock:
            return await self._activate(name)

    def _load_path(self, name: str) -> Path | None:
        """Where to load `name` from, or None when it needs no disk read (base, or already resident). The store
        validates the files either way: a resident adapter whose files vanished or broke is still refused."""
        if name == BASE:
            return None
        path = self.store.path(name)
        return None if self.generator.is_resident(name) else path

    async def _activate(self, name: str) -> float:
        previous = self.generator.active
        took = await self.generator.use_adapter(name, self._load_path(name))
        try:
            await self.generator.health_check()  # outside the member-facing queue bound
        except Exception as exc:
            log.error("adapter %s failed its health check (%s); back to %s", name, exc, previous)
            await self.generator.use_adapter(previous, self._load_path(previous))
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
            await self.generator.use_adapter(previous, self._load_path(previous))
            self.store.rollback()
            return previous

    def list(self) -> list[AdapterInfo]:
        """All versions; the active marker shows what really serves now (not only what the pointer says)."""
        return [dataclasses.replace(i, active=i.name == self.generator.active) for i in self.store.list()]

    def info(self, name: str) -> AdapterInfo:
        """One version's metadata, with the really-serving marker."""
        info = self.store.info(name)
        return dataclasses.replace(info, active=info.name == self.generator.active)
