"""What Kilroy holds about a member and how it lets go: forget-me (with the adapters' metadata scrub), the opt-in
back, the my-data export, and retention (prune old raw data, then VACUUM). The SQL is in `bot/storage/privacy.py`;
`/forget-me`, `/opt-in`, `/my-data` and the daily retention loop only call this service.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from bot.adapters.store import AdapterStore
from bot.storage import Storage
from bot.storage.privacy import FORGOTTEN, dump_json

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Forgotten:
    """What a forget-me did: rows deleted or redacted per kind of record, and adapter metadata files rewritten."""

    deleted: dict[str, int]
    scrubbed: int = 0


@dataclass(frozen=True)
class MemberExport:
    """A member's data as the /my-data file (JSON bytes), with how many records of each kind it holds."""

    payload: bytes
    counts: dict[str, int]


class PrivacyService:
    """Forget-me, opt-in, my-data and retention over the database and the adapters' metadata."""

    def __init__(
        self,
        storage: Storage,
        *,
        retention_days: int,
        adapter_store: AdapterStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.storage, self.adapter_store, self.clock = storage, adapter_store, clock
        self.retention_days = retention_days  # KILROY_RETENTION_DAYS; 0 keeps raw data for ever
        self._forgotten_since_vacuum = False  # a forget-me deleted rows: the next retention run VACUUMs

    async def forget(self, member_id: int) -> Forgotten:
        """Delete or redact everything tied to a member, record their opt-out, and replace their id in every
        adapter's meta.json (off the event loop). Adapters trained before are not retrained."""
        deleted = await self.storage.forget_member(member_id, at=self.clock())
        scrubbed = 0
        if self.adapter_store is not None:
            scrubbed = await asyncio.to_thread(self.adapter_store.scrub, str(member_id), FORGOTTEN)
        self._forgotten_since_vacuum = True
        return Forgotten(deleted, scrubbed)

    async def opt_in(self, member_id: int) -> bool:
        """Lift a member's opt-out; True if there was one."""
        return await self.storage.opt_in(member_id)

    async def export(self, member_id: int) -> MemberExport:
        """Everything held about a member, with the retention period it is kept for."""
        data = await self.storage.member_data(member_id)
        data["retention_days"] = self.retention_days
        counts = {kind: len(rows) for kind, rows in data.items() if isinstance(rows, list)}
        return MemberExport(dump_json(data), counts)

    async def run_retention(self) -> dict[str, int]:
        """Delete raw events and replies older than KILROY_RETENTION_DAYS once trained on; VACUUM if anything was
        deleted (by retention or a forget-me) since the last run. Never raises: a failure is logged and the next
        run tries again."""
        days = self.retention_days
        done: dict[str, int] = {}
        if days > 0:
            try:
                done = await self.storage.prune(older_than=self.clock() - days * 86400.0)
            except Exception:
                log.exception("retention: pruning failed; it will be tried again on the next run")
            if any(done.values()):
                log.info("retention: deleted %s", ", ".join(f"{n} {k}" for k, n in done.items()))
        if any(done.values()) or self._forgotten_since_vacuum:
            try:
                await self.storage.vacuum()
                self._forgotten_since_vacuum = False
            except Exception:  # a busy database: keep the loop alive and try again tomorrow
                log.exception("retention: VACUUM failed; it will be tried again on the next run")
        return done
