"""Training runs, step by step through the promotion sequence (see bot/adapters/promotion.py)."""

from __future__ import annotations

import json
from typing import Any

from bot.domain.records import TrainingRun
from bot.storage._db import StorageBase, chunks


class RunsMixin(StorageBase):
    """The training-runs table."""

    # --- training runs and adapter versions --------------------------------------------------------------------------

    async def start_run(self, reason: str, *, at: float, community: str | None = None) -> int:
        """Open a training-run row for a community's lineage (None: no community, as before issue 24); return its id."""
        async with self._write:
            cur = await self.db.execute(
                "INSERT INTO training_runs (reason, status, started_at, community) VALUES (?, 'running', ?, ?) "
                "RETURNING id",
                (reason, at, community),
            )
            (run_id,) = await cur.fetchall()
            return int(run_id[0])

    async def fail_stale_runs(self, *, at: float, message: str | None = None) -> int:
        """Close runs that never committed a candidate (stage 'training'): their process died or was killed.

        Call only while holding the training lock: then no live run can be among them.
        """
        async with self._write:
            cur = await self.db.execute(
                "UPDATE training_runs SET status = 'failed', stage = 'closed', finished_at = ?, message = ? "
                "WHERE status = 'running' AND stage = 'training'",
                (at, message or "interrupted: the training process stopped before finishing"),
            )
        return cur.rowcount

    async def commit_run(
        self,
        run_id: int,
        *,
        adapter: str,
        accepted: bool,
        message: str,
        metrics: dict[str, Any],
        post_ids: list[int],
    ) -> None:
        """The worker's last step: record the committed candidate and the gate's verdict, and claim its posts.

        Claimed posts are not offered to another run; the bot marks them trained as the first step of promotion.
        """
        async with self.transaction():
            await self.db.execute(
                "UPDATE training_runs SET stage = 'committed', adapter = ?, accepted = ?, message = ?, metrics = ? "
                "WHERE id = ? AND stage = 'training'",
                (adapter, int(accepted), message, json.dumps(metrics), run_id),
            )
            for chunk in chunks(post_ids, 500):
                marks = ",".join("?" * len(chunk))
                await self.db.execute(
                    f"UPDATE posts SET trained_run = ? WHERE id IN ({marks}) AND trained_at IS NULL", [run_id, *chunk]
                )

    async def mark_run_trained(self, run_id: int, *, at: float) -> int:
        """Promotion step 1, in one transaction: the run's claimed posts become trained and the run closes 'done'.

        Idempotent: a second call changes nothing. Returns how many posts were marked.
        """
        async with self.transaction():
            cur = await self.db.execute(
                "UPDATE posts SET trained_at = ? WHERE trained_run = ? AND trained_at IS NULL", (at, run_id)
            )
            await self.db.execute(
                "UPDATE training_runs SET status = 'done', stage = 'marked', finished_at = ? "
                "WHERE id = ? AND stage = 'committed'",
                (at, run_id),
            )
        return cur.rowcount

    async def set_run_stage(self, run_id: int, stage: str, *, message: str | None = None) -> None:
        """Record a later step of the promotion sequence (swapped, promoted, kept, refused)."""
        async with self._write:
            if message is None:
                await self.db.execute("UPDATE training_runs SET stage = ? WHERE id = ?", (stage, run_id))
            else:
                await self.db.execute(
                    "UPDATE training_runs SET stage = ?, message = ? WHERE id = ?", (stage, message, run_id)
                )

    async def get_run(self, run_id: int) -> TrainingRun | None:
        """One training run."""
        async with self.db.execute("SELECT * FROM training_runs WHERE id = ?", (run_id,)) as cur:
            row = await cur.fetchone()
            cols = [c[0] for c in cur.description]
        return _run(cols, row) if row else None

    async def unfinished_promotions(self, community: str | None = None) -> list[TrainingRun]:
        """Runs whose candidate was committed but whose promotion sequence did not reach its end, oldest first;
        `community` keeps that lineage's only."""
        where, args = ("AND community = ? ", (community,)) if community is not None else ("", ())
        async with self.db.execute(
            f"SELECT * FROM training_runs WHERE stage IN ('committed', 'marked', 'swapped') {where}ORDER BY id", args
        ) as cur:
            rows = await cur.fetchall()
            cols = [c[0] for c in cur.description]
        return [_run(cols, r) for r in rows]

    async def finish_run(
        self,
        run_id: int,
        *,
        status: str,
        at: float,
        adapter: str | None = None,
        accepted: bool | None = None,
        message: str | None = None,
        metrics: dict[str, Any] | None = None,
    ) -> None:
        """Close a training-run row with its outcome."""
        async with self._write:
            await self.db.execute(
                "UPDATE training_runs SET status = ?, stage = 'closed', finished_at = ?, adapter = ?, accepted = ?, "
                "message = ?, "
                "metrics = ? WHERE id = ?",
                (
                    status,
                    at,
                    adapter,
                    None if accepted is None else int(accepted),
                    message,
                    json.dumps(metrics or {}),
                    run_id,
                ),
            )

    async def runs(self, limit: int = 20, *, community: str | None = None) -> list[TrainingRun]:
        """The latest training runs, newest first; `community` keeps that lineage's only."""
        where, args = ("WHERE community = ? ", [community]) if community is not None else ("", [])
        async with self.db.execute(
            f"SELECT * FROM training_runs {where}ORDER BY id DESC LIMIT ?", (*args, limit)
        ) as cur:
            rows = await cur.fetchall()
            cols = [c[0] for c in cur.description]
        return [_run(cols, r) for r in rows]


def _run(cols: list[str], row: Any) -> TrainingRun:
    d = dict(zip(cols, row, strict=True))
    d["metrics"] = json.loads(d["metrics"] or "{}")
    d["accepted"] = None if d["accepted"] is None else bool(d["accepted"])
    return TrainingRun(**d)
