"""The one path of a night's training: lock, reconcile, train (in a worker process or in-process), promote.

Every caller goes through `TrainingRunner.run`: the bot's nightly loop and /retrain (worker process, hot swap),
`kilroy train` (in-process, no live model) and the simulation (either). The worker receives the exact Settings
the caller runs with, serialised on its stdin (secrets left out), and an environment without DISCORD_TOKEN or any
KILROY_* variable, so no stray `.env` can change what it trains with.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from bot.adapters.promotion import Promoter, StartTrial, Swap
from bot.adapters.store import AdapterStore
from bot.config.settings import Settings
from bot.domain.records import RunResult
from bot.logs import log_context
from bot.storage import Storage
from bot.training.lock import TrainingBusy, TrainingLock
from bot.training.result import Progress

log = logging.getLogger(__name__)

OnProgress = Callable[[Progress], Awaitable[None] | None]

__all__ = ["TrainingBusy", "TrainingFailed", "TrainingRunner", "child_env"]

SECRET_VARS = ("DISCORD_TOKEN", "KILROY_DASHBOARD_TOKEN")


class TrainingFailed(Exception):
    """The training failed (worker crash, timeout); the serving adapter is unchanged."""


def child_env(env: Mapping[str, str]) -> dict[str, str]:
    """The worker's environment: the parent's, without secrets and without settings (they come on stdin)."""
    return {k: v for k, v in env.items() if k not in SECRET_VARS and not k.startswith("KILROY_")} | {
        "PYTHONUNBUFFERED": "1"
    }


def database_env(settings: Settings) -> dict[str, str]:
    """KILROY_DATABASE_URL for the worker when the bot runs on PostgreSQL (empty for SQLite: the path is a setting)."""
    url = settings.database_url.get()
    return {"KILROY_DATABASE_URL": url} if url else {}


class TrainingRunner:
    """Runs one training at a time (across processes) and promotes its candidate through `Promoter`."""

    def __init__(
        self,
        settings: Settings,
        storage: Storage,
        store: AdapterStore,
        *,
        swap: Swap | None = None,
        trial: StartTrial | None = None,
        defer_to_trial: bool = False,
        in_process: bool = False,
        command: list[str] | None = None,
        env: Mapping[str, str] | None = None,
        backup: Callable[[Settings], Path] | None = None,
    ) -> None:
        self.settings = settings
        self.storage = storage
        self.store = store
        self.promoter = Promoter(storage, store, swap=swap, trial=trial, defer_to_trial=defer_to_trial)
        self.in_process = in_process
        self.command = command or [sys.executable, "-m", "bot.training.worker"]
        self.env = dict(env) if env is not None else dict(os.environ)
        self.lock = TrainingLock(settings.adapters_dir)
        self.backup = backup  # KILROY_BACKUP_DIR's nightly backup, given by the composition root

    @property
    def busy(self) -> bool:
        """True while a run is in progress here or in another process."""
        return self.lock.is_locked()

    async def reconcile(self) -> list[str]:
        """At start: finish what an interrupted run left, if no other process is training now."""
        try:
            self.lock.acquire("start-up reconcile")
        except TrainingBusy as exc:
            log.info("not reconciling training state: %s", exc)
            return []
        try:
            return await self.promoter.reconcile()
        finally:
            self.lock.release()

    async def run(self, reason: str, on_progress: OnProgress | None = None, *, now: float | None = None) -> RunResult:
        """Train and promote; raise TrainingBusy if a run holds the lock, TrainingFailed if training fails."""
        self.lock.acquire(f"training ({reason})")
        try:
            if reason == "nightly" and self.backup is not None and self.settings.ops.backup_dir is not None:
                await self._backup_first()
            await self.promoter.reconcile()
            if self.in_process:
                result = await self._in_process(reason, on_progress, now)
            else:
                result = await self._worker(reason, on_progress, now)
            if result.status != "done" or result.run_id is None:
                return result
            with log_context(run=result.run_id):
                return await self.promoter.apply(result.run_id)
        finally:
            self.lock.release()

    async def _backup_first(self) -> None:
        """KILROY_BACKUP_DIR: a backup before the night's training; a failed backup is logged, never fatal."""
        assert self.backup is not None
        try:
            path = await asyncio.to_thread(self.backup, self.settings)
            log.info("nightly backup written to %s", path)
        except Exception:
            log.exception("nightly backup failed; training anyway (check KILROY_BACKUP_DIR)")

    async def _in_process(self, reason: str, on_progress: OnProgress | None, now: float | None) -> RunResult:
        from bot.training.nightly import run_training

        def emit(event: Progress) -> None:
            if on_progress is not None:
                maybe = on_progress(event)
                if asyncio.iscoroutine(maybe):  # called from the training thread: plain callbacks only
                    maybe.close()

        try:
            return await run_training(self.settings, self.storage, self.store, now=now, reason=reason, on_progress=emit)
        except Exception as exc:
            raise TrainingFailed(f"training failed: {type(exc).__name__}: {exc}") from exc

    async def _worker(self, reason: str, on_progress: OnProgress | None, now: float | None) -> RunResult:
        args = [*self.command, "--reason", reason]
        if now is not None:
            args += ["--now", repr(now)]
        proc = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            # the one secret the worker needs: its database (settings on stdin leave secrets out)
            env=child_env(self.env) | database_env(self.settings),
        )
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        proc.stdin.write(json.dumps(self.settings.to_json()).encode())
        proc.stdin.close()
        tail: collections.deque[str] = collections.deque(maxlen=20)

        async def relay() -> None:
            # the worker's log lines (in the same KILROY_LOG_FORMAT, its run id on each JSON line) join ours on
            # stderr; the last few explain a crash
            assert proc.stderr is not None
            while True:
                try:
                    raw = await proc.stderr.readline()
                except ValueError:  # one line past the stream's 64 KiB limit: dropped, the rest still relayed
                    continue
                if not raw:
                    break
                line = raw.decode(errors="replace")
                if line.strip():
                    tail.append(line.strip())
                    sys.stderr.write(line if line.endswith("\n") else line + "\n")

        stderr_task = asyncio.create_task(relay())
        done: RunResult | None = None
        error: str | None = None
        run_id: int | None = None  # known once the worker reports its start

        async def pump() -> None:
            nonlocal done, error, run_id
            assert proc.stdout is not None
            async for raw in proc.stdout:
                try:
                    line = json.loads(raw)
                except ValueError:
                    continue
                if not isinstance(line, dict):
                    continue
                event = Progress.from_json(line)
                if event.kind == "start":
                    run_id = event.run_id
                elif event.kind == "done":
                    done = event.result
                elif event.kind == "error":
                    error = event.message
                if on_progress is not None:
                    maybe = on_progress(event)
                    if asyncio.iscoroutine(maybe):
                        await maybe
            await proc.wait()

        limit = self.settings.training.timeout_minutes * 60.0
        try:
            await asyncio.wait_for(pump(), timeout=limit)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            stderr_task.cancel()
            message = f"killed: ran past KILROY_TRAIN_TIMEOUT_MINUTES={self.settings.training.timeout_minutes:g}"
            await self.storage.fail_stale_runs(at=time.time(), message=message)
            self.store.remove_temp_dirs()
            with log_context(run=run_id):
                log.error("training worker %s", message)
            raise TrainingFailed(f"training {message}") from None
        except BaseException:
            if proc.returncode is None:  # cancelled (bot shutting down): do not leave an orphan training
                proc.kill()
                await proc.wait()
            raise
        await stderr_task
        if proc.returncode != 0 or done is None:
            last = error or (tail[-1] if tail else "no output")
            with log_context(run=run_id):
                log.error("training worker failed (exit %s): %s", proc.returncode, last)
            raise TrainingFailed(f"training failed (exit {proc.returncode}): {last}")
        return done
