"""Adapter switching for the running bot: the store decides what exists, the generator loads it.

The order makes a swap all-or-nothing: validate the name and files, load into the live model, and only then
move the store's `CURRENT` pointer. A failure anywhere leaves both the model and the pointer as they were.

Per community (issue 24): `AdapterService(lineages.store("g123"), generator, community="g123", default=False)`
serves one lineage. Its methods take the lineage's bare version names ("v0004"); the generator knows each
version by its reference ("g123/v0004", see bot/domain/community.py), so many lineages stay resident side by side.
- `default=True` (the commons): this lineage drives the generator's default adapter, `generator.active`, which
  writes whatever names no adapter (story mode, `kilroy generate`, the simulation).
- `default=False` (a server): the generator's default is left alone; the adapter is made resident and checked
  with one short generation written by it, and the posting path names it on every call (`adapter=reference`).
- `community=None`: one flat store, names are references (the layout before communities; engine tests).
What serves a community is its pointer through the policy (`Lineages.serving`); `use` moves the pointer last.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from pathlib import Path

from bot.adapters.store import BASE, AdapterInfo, AdapterStore, NothingToRollBack
from bot.domain.community import parse_ref, ref
from bot.engine.generator import Generator

log = logging.getLogger(__name__)


class AdapterUnhealthy(Exception):
    """An adapter loaded but could not generate; the previous one keeps serving."""


class AdapterService:
    """List, use, roll back adapters on the live model, without a restart."""

    def __init__(
        self, store: AdapterStore, generator: Generator, *, community: str | None = None, default: bool = True
    ) -> None:
        self.store = store
        self.generator = generator
        self.community = community
        self.default = default or community is None
        self._own: str | None = None  # a non-default lineage's serving version (None: not restored yet)
        self._lock = asyncio.Lock()

    def ref(self, name: str) -> str:
        """The generator's name of a version of this lineage ("g123/v0004"; a bare name without communities)."""
        return name if self.community is None else ref(self.community, name)

    def version(self, reference: str) -> str | None:
        """The version a reference names in this lineage ("base" for base), or None when it is another's."""
        if self.community is None:
            return reference
        community, version = parse_ref(reference)
        return version if community in (None, self.community) else None

    @property
    def active(self) -> str:
        """The version of this lineage serving now (bare name; `base` when none)."""
        if not self.default:
            return self.store.current() if self._own is None else self._own
        return self.version(self.generator.active) or BASE

    @property
    def reference(self) -> str:
        """The reference of this lineage's serving version."""
        return self.ref(self.active)

    async def restore(self) -> str:
        """At start: serve the store's current adapter; if it is broken, the last good one in the history, loudly.

        The pointer then names what really serves (the broken version stays on disk for an operator to inspect).
        """
        name = self.store.current()
        if name == BASE:
            self._own = BASE
            return BASE
        try:
            await self.use(name)
            return self.active
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
        self._own = BASE
        log.error("no good adapter in the history: serving the base model instead of the broken %s", name)
        return self.active

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
        return None if self.generator.is_resident(self.ref(name)) else path

    async def ensure_resident(self, name: str) -> None:
        """Load a version of this lineage into memory without serving it (a post about to be written by it)."""
        path = self._load_path(name)
        if path is not None:
            await self.generator.preload(self.ref(name), path, pin=False)

    async def _activate(self, name: str) -> float:
        if not self.default:
            return await self._activate_beside(name)
        previous = self.generator.active
        took = await self.generator.use_adapter(self.ref(name), self._load_path(name))
        try:
            await self.generator.health_check()  # outside the member-facing queue bound
        except Exception as exc:
            log.error("adapter %s failed its health check (%s); back to %s", self.ref(name), exc, previous)
            await self.generator.use_adapter(previous, self._lineage_path(previous))
            raise AdapterUnhealthy(f"adapter {self.ref(name)} failed its health check: {exc}") from exc
        return took

    def _lineage_path(self, reference: str) -> Path | None:
        version = self.version(reference)
        return None if version is None else self._load_path(version)

    async def _activate_beside(self, name: str) -> float:
        """A server's lineage: resident beside the others, checked with one short sample it writes itself."""
        started = time.perf_counter()
        await self.ensure_resident(name)
        try:
            samples = await self.generator.generate(1, adapter=self.ref(name), seed=0, max_new_tokens=4)
            if not samples or not samples[0].completion_ids:
                raise RuntimeError("it generated nothing")
        except Exception as exc:
            log.error("adapter %s failed its health check (%s)", self.ref(name), exc)
            raise AdapterUnhealthy(f"adapter {self.ref(name)} failed its health check: {exc}") from exc
        self._own = name
        return time.perf_counter() - started

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
            if self.default:
                await self.generator.use_adapter(self.ref(previous), self._load_path(previous))
            else:
                await self.ensure_resident(previous)
                self._own = previous
            self.store.rollback()
            return previous

    def list(self) -> list[AdapterInfo]:
        """All versions; the active marker shows what really serves now (not only what the pointer says)."""
        active = self.active
        return [dataclasses.replace(i, active=i.name == active) for i in self.store.list()]

    def info(self, name: str) -> AdapterInfo:
        """One version's metadata, with the really-serving marker."""
        info = self.store.info(name)
        return dataclasses.replace(info, active=info.name == self.active)
