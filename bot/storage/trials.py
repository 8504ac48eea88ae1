"""A/B trials of adapters: the trials table and the trial columns of posts."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from bot.domain.records import Trial
from bot.domain.scoring import Baseline
from bot.storage._db import StorageBase
from bot.storage.privacy import FORGOTTEN


class TrialActive(Exception):
    """A trial is already running; end it before starting another."""

    def __init__(self) -> None:
        super().__init__("an A/B trial is already running; stop it first (`/adapter trial stop`)")


class TrialsMixin(StorageBase):
    """The trials table; posts carry `trial_id` and `arm`."""

    async def start_trial(
        self,
        *,
        candidate: str,
        incumbent: str,
        run_id: int | None,
        share: float,
        alpha: float,
        max_posts: int,
        seed: int,
        baselines: Mapping[int, Baseline],
        at: float,
        community: str | None = None,
    ) -> int:
        """Open a trial of a community's lineage; return its id. Raises TrialActive if that community has one
        running (at most one per community; None: the one trial of a store without communities)."""
        async with self.transaction():
            same = "community = ?" if community is not None else "community IS NULL"
            args = (community,) if community is not None else ()
            async with self.db.execute(f"SELECT 1 FROM trials WHERE ended_at IS NULL AND {same}", args) as cur:
                if await cur.fetchone():
                    raise TrialActive()
            cur = await self.db.execute(
                "INSERT INTO trials (candidate, incumbent, run_id, share, alpha, max_posts, seed, baselines, "
                "started_at, community) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (
                    candidate,
                    incumbent,
                    run_id,
                    share,
                    alpha,
                    max_posts,
                    seed,
                    json.dumps({str(k): [b.median, b.spread] for k, b in baselines.items()}),
                    at,
                    community,
                ),
            )
            (row,) = await cur.fetchall()
            return int(row[0])

    async def active_trial(self, community: str | None = None) -> Trial | None:
        """The running trial of `community` (None: the newest running trial of any), or None."""
        where, args = ("AND community = ? ", (community,)) if community is not None else ("", ())
        async with self.db.execute(
            f"SELECT * FROM trials WHERE ended_at IS NULL {where}ORDER BY id DESC LIMIT 1", args
        ) as cur:
            row = await cur.fetchone()
            return _trial(cur.description, row) if row else None

    async def get_trial(self, trial_id: int) -> Trial | None:
        """One trial by id."""
        async with self.db.execute("SELECT * FROM trials WHERE id = ?", (trial_id,)) as cur:
            row = await cur.fetchone()
            return _trial(cur.description, row) if row else None

    async def trials(self, limit: int = 20, *, community: str | None = None) -> list[Trial]:
        """The latest trials, newest first; `community` keeps that lineage's only."""
        where, args = ("WHERE community = ? ", (community,)) if community is not None else ("", ())
        async with self.db.execute(f"SELECT * FROM trials {where}ORDER BY id DESC LIMIT ?", (*args, limit)) as cur:
            return [_trial(cur.description, r) for r in await cur.fetchall()]

    async def move_trial_candidate(self, trial_id: int, *, candidate: str, run_id: int | None) -> bool:
        """A guard's candidate arm moves to a newer adapter (its evidence carries on); False if the trial ended."""
        async with self._write:
            cur = await self.db.execute(
                "UPDATE trials SET candidate = ?, run_id = ? WHERE id = ? AND ended_at IS NULL",
                (candidate, run_id, trial_id),
            )
            return cur.rowcount == 1

    async def end_trial(
        self,
        trial_id: int,
        *,
        verdict: str,
        decided_by: str,
        summary: str,
        at: float,
        member_id: int | None = None,
    ) -> bool:
        """Close a running trial with its verdict; False if it had already ended (a verdict is final).

        `member_id`: the operator who decided; stored as their label (a keyed hash), never the id, and as a
        forgotten member if they used /forget-me (checked under the write lock, as forget writes).
        """
        async with self.transaction():
            if member_id is not None:
                decided_by = FORGOTTEN if self._opted_out(member_id) else self.member_label(member_id)
            cur = await self.db.execute(
                "UPDATE trials SET ended_at = ?, verdict = ?, decided_by = ?, summary = ? "
                "WHERE id = ? AND ended_at IS NULL",
                (at, verdict, decided_by, summary, trial_id),
            )
            return cur.rowcount == 1

    async def trial_post_counts(self, trial_id: int) -> dict[str, int]:
        """How many posts each arm of a trial has written (settled or not)."""
        async with self.db.execute(
            "SELECT arm, COUNT(*) FROM posts WHERE trial_id = ? GROUP BY arm", (trial_id,)
        ) as cur:
            return {str(arm): int(n) for arm, n in await cur.fetchall()}


def _trial(description: Any, row: Any) -> Trial:
    d = dict(zip([c[0] for c in description], row, strict=True))
    return Trial(
        id=int(d["id"]),
        candidate=str(d["candidate"]),
        incumbent=str(d["incumbent"]),
        run_id=d["run_id"],
        share=float(d["share"]),
        alpha=float(d["alpha"]),
        max_posts=int(d["max_posts"]),
        seed=int(d["seed"]),
        baselines={int(k): Baseline(float(v[0]), float(v[1])) for k, v in json.loads(d["baselines"] or "{}").items()},
        started_at=float(d["started_at"]),
        ended_at=d["ended_at"],
        verdict=d["verdict"],
        decided_by=d["decided_by"],
        summary=d["summary"],
        community=d.get("community"),
    )
