"""Backups that restore: the database, the adapters the pointer's history names, STATE.json, and a manifest.

`backup()` runs while the bot runs: the database is copied with SQLite's online backup API (a consistent snapshot
even while gateway events write), and the adapter folders are immutable once committed. Everything is written into
a temporary folder renamed into place last, so a backup folder either is complete or does not exist.

`restore()` checks the manifest (every file's SHA-256 and size) and `PRAGMA integrity_check` before touching
anything, refuses while a bot or a training holds its lock, and moves what it replaces aside (`*.replaced-<time>`)
rather than deleting it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.adapters.store import BASE, validate_name
from bot.config.settings import Settings
from bot.training.lock import TrainingBusy, TrainingLock

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
DB_NAME = "kilroy.db"
STATE = "STATE.json"
FORMAT = 1
RUN_LOCK = ".kilroy-run.lock"


class BackupError(Exception):
    """A backup cannot be written or restored; the message says why and what to do."""


class RunLock(TrainingLock):
    """Held by `kilroy run` for its lifetime (a flock on `<data dir>/.kilroy-run.lock`): restore refuses while held."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir)
        self.path = Path(data_dir) / RUN_LOCK


@dataclass(frozen=True)
class BackupResult:
    path: Path
    files: int
    bytes: int
    adapters: list[str]
    seconds: float


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _files(root: Path) -> Iterator[Path]:
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            yield p


def _named_adapters(adapters_dir: Path) -> tuple[dict[str, Any], list[str]]:
    """The pointer state and every adapter it names (current and rollback history) that exists on disk."""
    try:
        state = json.loads((adapters_dir / STATE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        state = {"current": BASE, "history": []}
    except ValueError as exc:
        raise BackupError(f"{adapters_dir / STATE} is not valid JSON ({exc}); fix or remove it first") from exc
    names: list[str] = []
    for name in [*(state.get("history") or []), state.get("current") or BASE]:
        try:
            validate_name(name)
        except Exception:
            continue
        if name != BASE and name not in names and (adapters_dir / name).is_dir():
            names.append(name)
    return state, names


def backup(settings: Settings, dest: Path) -> BackupResult:
    """Write a consistent snapshot into the new folder `dest` (it must not exist yet)."""
    started = time.perf_counter()
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise BackupError(f"{dest} already exists and is not empty; choose a new folder")
    if not Path(settings.db_path).is_file():
        raise BackupError(f"no database at {settings.db_path}; nothing to back up (check KILROY_DB_PATH)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        # the pointer first: adapters it names are committed (immutable) folders, so copying them later is safe
        state, names = _named_adapters(Path(settings.adapters_dir))
        source = sqlite3.connect(f"file:{settings.db_path}?mode=ro", uri=True, timeout=30)
        target = sqlite3.connect(tmp / DB_NAME)
        try:
            # online backup: copies pages in steps, restarting if a writer changes the source meanwhile
            source.backup(target, pages=1024, sleep=0.005)
            target.execute("PRAGMA journal_mode=DELETE")  # one self-contained file: no -wal beside it
            schema = int(target.execute("PRAGMA user_version").fetchone()[0])
            posts = int(target.execute("SELECT COUNT(*) FROM posts").fetchone()[0])
        finally:
            target.close()
            source.close()
        (tmp / "adapters").mkdir()
        for name in names:
            shutil.copytree(Path(settings.adapters_dir) / name, tmp / "adapters" / name)
        (tmp / "adapters" / STATE).write_text(json.dumps(state, indent=2), encoding="utf-8")
        files = {str(p.relative_to(tmp)): {"sha256": _sha256(p), "bytes": p.stat().st_size} for p in _files(tmp)}
        manifest = {
            "format": FORMAT,
            "created_at": time.time(),
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "schema_version": schema,
            "posts": posts,
            "current": state.get("current") or BASE,
            "adapters": names,
            "files": files,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        if dest.exists():
            dest.rmdir()
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    total = sum(f["bytes"] for f in files.values())
    log.info("backup written to %s: %d files, %.1f MB, adapters %s", dest, len(files), total / 1e6, names or "none")
    return BackupResult(dest, len(files), total, names, time.perf_counter() - started)


def verify(src: Path) -> dict[str, Any]:
    """Check a backup folder: manifest, every checksum, and the database's integrity; return the manifest."""
    src = Path(src)
    try:
        manifest = json.loads((src / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise BackupError(f"{src} has no {MANIFEST}: not a Kilroy backup (or an unfinished one)") from exc
    except ValueError as exc:
        raise BackupError(f"{src / MANIFEST} is not valid JSON: {exc}") from exc
    if manifest.get("format") != FORMAT or not isinstance(manifest.get("files"), dict):
        raise BackupError(f"{src / MANIFEST} has an unknown format; this Kilroy reads format {FORMAT}")
    problems = []
    for rel, info in sorted(manifest["files"].items()):
        path = src / rel
        if ".." in Path(rel).parts or Path(rel).is_absolute():
            problems.append(f"{rel}: a path outside the backup")
        elif not path.is_file():
            problems.append(f"{rel}: missing")
        elif path.stat().st_size != info.get("bytes") or _sha256(path) != info.get("sha256"):
            problems.append(f"{rel}: checksum differs (the file changed or is damaged)")
    extra = sorted(str(p.relative_to(src)) for p in _files(src) if str(p.relative_to(src)) not in manifest["files"])
    problems += [f"{rel}: not in the manifest" for rel in extra]
    if DB_NAME not in manifest["files"]:
        problems.append(f"{DB_NAME}: not in the manifest")
    if problems:
        raise BackupError("the backup does not match its manifest:\n  " + "\n  ".join(problems))
    # immutable: read without locks or a -wal/-shm file, so verifying never changes the backup folder
    con = sqlite3.connect(f"file:{src / DB_NAME}?mode=ro&immutable=1", uri=True)
    try:
        result = [r[0] for r in con.execute("PRAGMA integrity_check")]
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{DB_NAME} in the backup is not a readable database: {exc}") from exc
    finally:
        con.close()
    if result != ["ok"]:
        raise BackupError(f"{DB_NAME} in the backup fails integrity_check: {'; '.join(result[:5])}")
    return manifest


@contextlib.contextmanager
def _exclusive(settings: Settings) -> Iterator[None]:
    """Hold the bot's run lock and the training lock, or refuse naming the holder."""
    run, training = RunLock(settings.data_dir), TrainingLock(settings.adapters_dir)
    try:
        run.acquire("kilroy restore")
    except TrainingBusy:
        raise BackupError(
            f"a Kilroy bot is running on this data ({run.holder() or 'unknown'}); stop it first, then restore"
        ) from None
    try:
        try:
            training.acquire("kilroy restore")
        except TrainingBusy:
            raise BackupError(
                f"a training holds the lock ({training.holder() or 'unknown'}); wait for it, then restore"
            ) from None
        try:
            yield
        finally:
            training.release()
    finally:
        run.release()


def restore(settings: Settings, src: Path) -> dict[str, Any]:
    """Verify `src`, then put its database, adapters and pointer in place; replaced files are moved aside."""
    src = Path(src)
    manifest = verify(src)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    db = Path(settings.db_path)
    adapters = Path(settings.adapters_dir)
    with _exclusive(settings):
        db.parent.mkdir(parents=True, exist_ok=True)
        adapters.mkdir(parents=True, exist_ok=True)
        moved: list[str] = []
        for suffix in ("", "-wal", "-shm"):
            old = Path(f"{db}{suffix}")
            if old.exists():
                aside = old.with_name(f"{old.name}.replaced-{stamp}")
                os.replace(old, aside)
                moved.append(str(aside))
        aside_dir = adapters / f".replaced-{stamp}"
        for entry in [adapters / STATE, *(adapters / n for n in manifest.get("adapters", []))]:
            if entry.exists():
                aside_dir.mkdir(exist_ok=True)
                os.replace(entry, aside_dir / entry.name)
                moved.append(str(aside_dir / entry.name))
        tmp_db = db.with_name(f".{db.name}.restoring")
        shutil.copy2(src / DB_NAME, tmp_db)
        os.replace(tmp_db, db)
        for name in manifest.get("adapters", []):
            validate_name(name)
            tmp = adapters / f".tmp-restore-{name}"
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(src / "adapters" / name, tmp)
            os.replace(tmp, adapters / name)
        if (src / "adapters" / STATE).is_file():
            tmp_state = adapters / f".{STATE}.restoring"
            shutil.copy2(src / "adapters" / STATE, tmp_state)
            os.replace(tmp_state, adapters / STATE)
    log.info(
        "restored %s (%d posts, serving %s); moved aside: %s",
        src,
        manifest.get("posts", 0),
        manifest.get("current"),
        moved or "nothing",
    )
    return {**manifest, "moved_aside": moved}


def prune(backup_dir: Path, keep: int) -> list[Path]:
    """Delete the oldest automatic backups (`nightly-*`) beyond `keep`; return those removed."""
    found = sorted(p for p in Path(backup_dir).glob("nightly-*") if (p / MANIFEST).is_file())
    removed = found[:-keep] if keep > 0 else []
    for p in removed:
        shutil.rmtree(p, ignore_errors=True)
    return removed


def nightly_backup(settings: Settings) -> Path | None:
    """The automatic backup before a night's training, when KILROY_BACKUP_DIR is set; keeps the last N."""
    root = settings.ops.backup_dir
    if root is None:
        return None
    dest = Path(root) / f"nightly-{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%SZ')}"
    backup(settings, dest)
    prune(Path(root), settings.ops.backup_keep)
    return dest
