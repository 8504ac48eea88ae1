"""One training at a time across processes: an OS file lock (`fcntl.flock`) on `<adapters dir>/.training.lock`.

The lock lives with what training writes (the adapter store and its pointer), so two instances with their own
adapter folders never block each other, while everything sharing one store is serialised.

The bot holds it for a whole night (reconcile, worker, promotion); `kilroy train` takes it too, and refuses with
the holder's name when it cannot. The kernel releases a flock when its holder dies, so a crashed process never
leaves a stale lock behind, and "is a run still alive?" is answered by the lock, not by a guess.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

LOCK_NAME = ".training.lock"


class TrainingBusy(Exception):
    """A training run is already in progress (in this process or another)."""

    def __init__(self, holder: str = "") -> None:
        detail = f" ({holder})" if holder else ""
        super().__init__(f"a training run is already in progress{detail}; wait for it to finish")
        self.holder = holder


class TrainingLock:
    """A non-blocking exclusive lock; use as `with TrainingLock(adapters_dir).hold("kilroy train"):`."""

    def __init__(self, adapters_dir: Path) -> None:
        self.path = Path(adapters_dir) / LOCK_NAME
        self._file: IO[str] | None = None

    @property
    def held(self) -> bool:
        """True while this object holds the lock."""
        return self._file is not None

    def acquire(self, holder: str) -> None:
        """Take the lock or raise TrainingBusy naming who holds it."""
        if self._file is not None:
            raise TrainingBusy(self.holder() or holder)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held open for the lock's lifetime
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise TrainingBusy(self.holder()) from None
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"holder": holder, "pid": os.getpid(), "since": time.time()}))
        f.flush()
        self._file = f

    def release(self) -> None:
        """Release the lock (a no-op if not held)."""
        if self._file is None:
            return
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
        finally:
            self._file.close()
            self._file = None

    def holder(self) -> str:
        """Who holds (or last held) the lock, as 'what, pid N'."""
        try:
            info = json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            return ""
        return f"{info.get('holder', '?')}, pid {info.get('pid', '?')}" if info else ""

    def is_locked(self) -> bool:
        """True if some process (this one included) holds the lock now."""
        if self._file is not None:
            return True
        try:
            self.acquire("probe")
        except TrainingBusy:
            return True
        self.release()
        return False

    def hold(self, holder: str) -> Self:
        """Acquire now; release when the `with` block ends."""
        self.acquire(holder)
        return self

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
