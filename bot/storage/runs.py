"""Training runs and the adapter versions they wrote."""

from __future__ import annotations

import json
from typing import Any

from bot.storage._db import StorageBase
from bot.storage.records import TrainingRun


class RunsMixin(StorageBase):
    """The training-runs table."""

    # --- training runs and adapter versions --------------------------------------------------------------------------

    async def start_run(self, reason: str, *, at: float) -> int:
        """Open a training-run row; return its id."""
        async with self._write:
            cur = await self.db.execute(
                "INSERT INTO training_runs (reason, status, started_at) VALUES (?, 'running', ?)", (reason, at)
            )
            assert cur.lastrowid is not None
            return cur.lastrowid

    async def fail_stale_runs(self, *, at: float) -> int:
        """Close runs left 'running' by a process that died (one run at a time, so any open one is stale)."""
        async with self._write:
            cur = await self.db.execute(
                "UPDATE training_runs SET status = 'failed', finished_at = ?, message = 'interrupted: the training "
                "process stopped before finishing' WHERE status = 'running'",
                (at,),
            )
        return cur.rowcount

    async def finish_run(
        self,
        run_id: int,
        *,
        status: str,
        at: float,
        adapter: str | None = None,
        promoted: bool | None = None,
        message: str | None = None,
        metrics: dict[str, Any] | None = None,
    ) -> None:
        """Close a training-run row with its outcome."""
        async with self._write:
            await self.db.execute(
                "UPDATE training_runs SET status = ?, finished_at = ?, adapter = ?, promoted = ?, message = ?, "
                "metrics = ? WHERE id = ?",
                (
                    status,
                    at,
                    adapter,
                    None if promoted is None else int(promoted),
                    message,
                    json.dumps(metrics or {}),
                    run_id,
                ),
            )

    async def runs(self, limit: int = 20) -> list[TrainingRun]:
        """The latest training runs, newest first."""
        async with self.db.execute("SELECT * FROM training_runs ORDER BY id DESC LIMIT ?", (limit,)) as cur:
            rows = await cur.fetchall()
            cols = [c[0] for c in cur.description]
        out = []
        for row in rows:
            d = dict(zip(cols, row, strict=True))
            d["metrics"] = json.loads(d["metrics"] or "{}")
            d["promoted"] = None if d["promoted"] is None else bool(d["promoted"])
            out.append(TrainingRun(**d))
        return out

    async def record_adapter(
        self, name: str, *, parent: str | None, run_id: int | None, at: float, metrics: dict[str, Any]
    ) -> None:
        """Remember an adapter version written by a run."""
        async with self._write:
            await self.db.execute(
                "INSERT INTO adapter_versions (name, parent, run_id, created_at, metrics) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET metrics = excluded.metrics",
                (name, parent, run_id, at, json.dumps(metrics)),
            )
