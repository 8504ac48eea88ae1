"""The bot's side of training: start the worker process, one run at a time, stream progress, hot-swap on success."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.config import Settings

log = logging.getLogger(__name__)

OnProgress = Callable[[dict[str, Any]], Awaitable[None] | None]


class TrainingBusy(Exception):
    """A training run is already in progress."""

    def __init__(self) -> None:
        super().__init__("a training run is already in progress; wait for it to finish")


class TrainingFailed(Exception):
    """The worker process failed; the serving adapter is unchanged."""


@dataclass
class Outcome:
    """How a run ended, as the bot reports it."""

    status: str
    adapter: str | None = None
    promoted: bool = False
    swapped: bool = False
    trial: bool = False  # the candidate passed the gate and went on an A/B trial instead of being swapped in
    reason: str = ""
    metrics: dict[str, float] = field(default_factory=dict)


class TrainingRunner:
    """Starts `python -m bot.training.worker`, parses its JSON lines, swaps the adapter in if it was promoted."""

    def __init__(
        self,
        settings: Settings,
        swap: Callable[[str], Awaitable[Any]],
        *,
        command: list[str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.swap = swap
        self.command = command or [sys.executable, "-m", "bot.training.worker"]
        self.env = dict(env) if env is not None else dict(os.environ)
        self._lock = asyncio.Lock()

    @property
    def busy(self) -> bool:
        """True while a run is in progress."""
        return self._lock.locked()

    def _child_env(self) -> dict[str, str]:
        s = self.settings
        return {
            **self.env,
            "KILROY_DATA_DIR": str(s.data_dir),
            "KILROY_DB_PATH": str(s.db_path),
            "KILROY_ADAPTERS_DIR": str(s.adapters_dir),
            "KILROY_MODEL": s.model.name,
            "PYTHONUNBUFFERED": "1",
        }

    async def run(self, reason: str, on_progress: OnProgress | None = None) -> Outcome:
        """Run one training; raise TrainingBusy if one is running, TrainingFailed if the worker fails."""
        if self._lock.locked():
            raise TrainingBusy()
        async with self._lock:
            proc = await asyncio.create_subprocess_exec(
                *self.command,
                "--reason",
                reason,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self._child_env(),
            )
            assert proc.stdout is not None and proc.stderr is not None
            stderr_task = asyncio.create_task(proc.stderr.read())
            done: dict[str, Any] | None = None
            error: str | None = None
            async for raw in proc.stdout:
                try:
                    event = json.loads(raw)
                except ValueError:
                    continue
                if event.get("event") == "done":
                    done = event
                elif event.get("event") == "error":
                    error = event.get("message")
                if on_progress is not None:
                    maybe = on_progress(event)
                    if asyncio.iscoroutine(maybe):
                        await maybe
            code = await proc.wait()
            stderr = (await stderr_task).decode(errors="replace")
            if code != 0 or done is None:
                tail = error or (stderr.strip().splitlines() or ["no output"])[-1]
                log.error("training worker failed (exit %s): %s", code, tail)
                raise TrainingFailed(f"training failed (exit {code}): {tail}")
            outcome = Outcome(
                status=done["status"],
                adapter=done.get("adapter"),
                promoted=bool(done.get("promoted")),
                reason=done.get("reason", ""),
                metrics=done.get("metrics") or {},
            )
            if outcome.promoted and outcome.adapter:
                try:
                    result = await self.swap(outcome.adapter)
                    outcome.trial = result == "trial"  # TrialService.on_candidate: a trial started, nothing swapped
                    outcome.swapped = not outcome.trial
                except Exception as exc:
                    # the worker promoted it on disk; serving keeps the old one until a restart or /adapter use
                    log.exception("promoted adapter %s could not be loaded", outcome.adapter)
                    outcome.reason += f"; hot swap failed: {exc}"
            return outcome
