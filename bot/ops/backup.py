"""Backups: the database, the adapters the pointer's history names, STATE.json, and a manifest; and their checks.

`backup()` runs while the bot runs: the database is copied with SQLite's online backup API (a consistent snapshot
even while gateway events write), or dumped with pg_dump on PostgreSQL (`pg_backup.py`), and the adapter folders
are immutable once committed. Everything is written into a temporary folder renamed into place last, only after the
copy passed `PRAGMA integrity_check` (a dump: `pg_restore --list`), so a backup folder either is complete and sound
or does not exist. Files are created 0600 and folders 0700 whatever the umask: a
backup holds members' ids and words.

`verify()` checks a backup before anything is restored from it (see `bot/ops/restore.py`): every name in the
manifest is a plain relative name of the expected layout, nothing in the folder is a link or a special file, every
listed file is present with its checksum, and the database is a Kilroy database that passes `integrity_check`.
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
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from bot.adapters.store import BASE, AdapterError, validate_name
from bot.config.settings import Settings
from bot.ops.pg_backup import DUMP_NAME
from bot.training.lock import TrainingLock

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
DB_NAME = "kilroy.db"
STATE = "STATE.json"
FORMAT = 1
RUN_LOCK = ".kilroy-run.lock"
PARTIAL = ".partial"


class BackupError(Exception):
    """A backup cannot be written or restored; the message says why and what to do (exit 2: bad input)."""


class DamagedDatabase(BackupError):
    """The live database is damaged or not a database: nothing was written (exit 1)."""


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


# --- private files -------------------------------------------------------------------------------------------------


def private_dir(path: Path) -> None:
    """Make a folder 0700 (its parents as the umask says)."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def copy_private(src: Path, dst: Path, *, expect: str | None = None) -> str:
    """Copy one regular file (never through a link) to a new 0600 file, fsynced; return its SHA-256.

    With `expect`, a copy whose checksum differs is removed and refused: what is copied is exactly what was checked,
    even if the source changes in between.
    """
    h = hashlib.sha256()
    fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise BackupError(f"{src} is not a regular file")
        out = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            while block := os.read(fd, 1 << 20):
                h.update(block)
                os.write(out, block)
            os.fsync(out)
        finally:
            os.close(out)
    finally:
        os.close(fd)
    digest = h.hexdigest()
    if expect is not None and digest != expect:
        dst.unlink()
        raise BackupError(f"{src} changed while it was copied (checksum differs from the manifest)")
    return digest


def write_private(path: Path, text: str) -> None:
    """Write a new 0600 text file, fsynced."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(path, 0o600)  # O_TRUNC on an existing file keeps its old mode


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _entries(root: Path) -> Iterator[tuple[Path, os.stat_result]]:
    """Every entry under `root` with its lstat, never following a link."""
    for top, dirs, files in os.walk(root, followlinks=False):
        for name in sorted(dirs + files):
            path = Path(top) / name
            yield path, path.lstat()


# --- the database --------------------------------------------------------------------------------------------------


def check_database(path: Path, *, what: str) -> tuple[int, int]:
    """(schema version, posts) of a Kilroy database that passes integrity_check; DamagedDatabase otherwise."""
    from bot.storage import migrations

    # immutable: read without locks or a -wal/-shm file, so checking never changes the folder it is in
    con = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    try:
        result = [r[0] for r in con.execute("PRAGMA integrity_check")]
        if result != ["ok"]:
            raise DamagedDatabase(f"{what} fails integrity_check: {'; '.join(result[:5])}")
        schema = int(con.execute("PRAGMA user_version").fetchone()[0])
        posts = int(con.execute("SELECT COUNT(*) FROM posts").fetchone()[0])
    except sqlite3.DatabaseError as exc:  # 'file is not a database', 'no such table: posts', a damaged page
        raise DamagedDatabase(f"{what} is not a readable Kilroy database ({exc})") from exc
    finally:
        con.close()
    latest = max(n for n, _ in migrations())
    if schema > latest:
        raise BackupError(f"{what} has schema {schema}, newer than this Kilroy knows ({latest}); use a newer Kilroy")
    return schema, posts


# --- backup --------------------------------------------------------------------------------------------------------


def _lineages(adapters_dir: Path) -> list[str]:
    """The per-community lineage folders (issue 24: adapters/g123/, adapters/commons/), each backed up whole."""
    from bot.domain.community import is_community

    if not adapters_dir.is_dir():
        return []
    return sorted(
        p.name
        for p in adapters_dir.iterdir()
        if is_community(p.name) and p.is_dir() and not p.is_symlink() and _holds_a_file(p)
    )


def _holds_a_file(folder: Path) -> bool:
    """A lineage folder with something committed in it: a server that has posted but trained nothing yet has an
    empty one, which a backup leaves out (a manifest entry without files fails verification)."""
    return any(
        e.is_file() and not any(part.startswith(".") for part in e.relative_to(folder).parts) for e in folder.rglob("*")
    )


def _copy_lineage(src: Path, dst: Path) -> None:
    """Copy a lineage: its committed versions, pointer and reward model; half-written temp entries are left out."""
    private_dir(dst)
    for entry in sorted(src.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_symlink():
            raise BackupError(f"{entry} is a symbolic link; adapters never hold links: move it away, then back up")
        if entry.is_dir():
            _copy_adapter(entry, dst / entry.name)
        elif entry.is_file():
            copy_private(entry, dst / entry.name)


def _named_adapters(adapters_dir: Path) -> tuple[dict[str, Any], list[str]]:
    """The pointer state and every adapter it names (current and rollback history) that exists on disk; then every
    community's lineage folder (restored whole, like an adapter)."""
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
    return state, names + _lineages(adapters_dir)


def _copy_adapter(src: Path, dst: Path) -> None:
    """Copy a committed adapter folder; a link inside it is refused (the store never serves one either)."""
    private_dir(dst)
    for path, st in _entries(src):
        rel = path.relative_to(src)
        if stat.S_ISLNK(st.st_mode):
            raise BackupError(f"{path} is a symbolic link; adapters never hold links: move it away, then back up")
        if stat.S_ISDIR(st.st_mode):
            private_dir(dst / rel)
        elif stat.S_ISREG(st.st_mode):
            copy_private(path, dst / rel)
        else:
            raise BackupError(f"{path} is not a regular file")


def _copy_sqlite(settings: Settings, tmp: Path) -> tuple[int, int]:
    """The SQLite database into `tmp` by the online backup API, checked; (schema version, posts)."""
    db = tmp / DB_NAME
    os.close(os.open(db, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))  # SQLite would create it 0644
    try:
        source = sqlite3.connect(f"file:{settings.db_path}?mode=ro", uri=True, timeout=30)
        target = sqlite3.connect(db)
        try:
            # online backup: copies pages in steps, restarting if a writer changes the source meanwhile
            source.backup(target, pages=1024, sleep=0.005)
            target.execute("PRAGMA journal_mode=DELETE")  # one self-contained file: no -wal beside it
        finally:
            target.close()
            source.close()
        # the copy is checked before the backup counts: a damaged database never replaces a good backup
        schema, posts = check_database(db, what=str(settings.db_path))
    except (sqlite3.DatabaseError, DamagedDatabase) as exc:
        what = exc if isinstance(exc, DamagedDatabase) else f"{settings.db_path} cannot be read ({exc})"
        raise DamagedDatabase(
            f"{what}. Nothing was written and older backups are kept: restore the last good one "
            "(`kilroy restore PATH`, the bot stopped), or repair the database (sqlite3 .recover)"
        ) from exc
    return schema, posts


def _dump_postgres(settings: Settings, tmp: Path) -> tuple[int, int]:
    """The PostgreSQL database into `tmp` by pg_dump, checked; (schema version, posts at the time of the dump)."""
    from bot.ops import pg_backup
    from bot.storage import migrations

    url = settings.database_url.get()
    try:
        pg_backup.dump(url, tmp / pg_backup.DUMP_NAME)
        schema = pg_backup.check_dump(tmp / pg_backup.DUMP_NAME, what=f"the dump of {settings.database_shown}")
        posts = _count_posts(url)
    except (pg_backup.DumpError, OSError, ConnectionError) as exc:
        raise DamagedDatabase(
            f"{exc}. Nothing was written and older backups are kept: check the server (`kilroy doctor`)"
        ) from exc
    latest = max(n for n, _ in migrations("postgresql"))
    if schema > latest:
        raise BackupError(f"{settings.database_shown} has schema {schema}, newer than this Kilroy knows ({latest})")
    return schema, posts


def _count_posts(url: str) -> int:
    """Posts in the PostgreSQL database (on a thread of its own: `backup` may be called from a running loop)."""
    import asyncio
    import threading

    from bot.storage._conn import PostgresConnection

    box: dict[str, Any] = {}

    async def count() -> None:
        con = await PostgresConnection.connect(url)
        try:
            box["posts"] = int((await con.execute_fetchall("SELECT COUNT(*) FROM posts"))[0][0])
        finally:
            await con.close()

    def run() -> None:
        try:
            asyncio.run(count())
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=run, name="kilroy-backup-count")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return int(box["posts"])


def backup(settings: Settings, dest: Path) -> BackupResult:
    """Write a consistent, checked snapshot into the new folder `dest` (it must not exist yet, or be empty)."""
    started = time.perf_counter()
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise BackupError(f"{dest} already exists and is not empty; choose a new folder")
    postgres = bool(settings.database_url)
    if not postgres and not Path(settings.db_path).is_file():
        raise BackupError(f"no database at {settings.db_path}; nothing to back up (check KILROY_DB_PATH)")
    if not dest.parent.exists():
        private_dir(dest.parent)
    tmp = dest.with_name(f".{dest.name}{PARTIAL}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(mode=0o700)
    os.chmod(tmp, 0o700)
    try:
        # the pointer first: adapters it names are committed (immutable) folders, so copying them later is safe
        state, names = _named_adapters(Path(settings.adapters_dir))
        if postgres:
            schema, posts = _dump_postgres(settings, tmp)
        else:
            schema, posts = _copy_sqlite(settings, tmp)
        private_dir(tmp / "adapters")
        lineages = set(_lineages(Path(settings.adapters_dir)))
        for name in names:
            copy = _copy_lineage if name in lineages else _copy_adapter
            copy(Path(settings.adapters_dir) / name, tmp / "adapters" / name)
        write_private(tmp / "adapters" / STATE, json.dumps(state, indent=2))
        files = {}
        for path, st in _entries(tmp):
            if stat.S_ISREG(st.st_mode):
                files[path.relative_to(tmp).as_posix()] = {"sha256": _sha256(path), "bytes": st.st_size}
        manifest = {
            "format": FORMAT,
            "created_at": time.time(),
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "schema_version": schema,
            "posts": posts,
            "integrity": "ok",
            "database": "postgresql" if postgres else "sqlite",
            "current": state.get("current") or BASE,
            "adapters": names,
            "files": files,
        }
        write_private(tmp / MANIFEST, json.dumps(manifest, indent=2))
        if dest.exists():
            dest.rmdir()
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    total = sum(f["bytes"] for f in files.values())
    log.info("backup written to %s: %d files, %.1f MB, adapters %s", dest, len(files), total / 1e6, names or "none")
    return BackupResult(dest, len(files), total, names, time.perf_counter() - started)


# --- verify --------------------------------------------------------------------------------------------------------


def plain_name(rel: object) -> PurePosixPath | None:
    """`rel` as a relative path if it is a plain one ('a/b', no '..', '.', empty part, backslash or NUL); else None."""
    if not isinstance(rel, str) or not rel or "\\" in rel or "\x00" in rel:
        return None
    p = PurePosixPath(rel)
    if p.is_absolute() or rel != p.as_posix() or any(part in ("", ".", "..") for part in p.parts):
        return None
    return p


def _adapter_name(name: object) -> str | None:
    try:
        return validate_name(name) if isinstance(name, str) and name != BASE else None  # type: ignore[arg-type]
    except AdapterError:
        return None


def _check_state(path: Path) -> list[str]:
    """STATE.json of a backup names adapters only by plain names."""
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        return [f"adapters/{STATE}: not valid JSON ({exc})"]
    if not isinstance(state, dict) or not isinstance(state.get("history", []), list):
        return [f"adapters/{STATE}: not a pointer state"]
    bad = [n for n in [state.get("current", BASE), *state.get("history", [])] if n != BASE and not _adapter_name(n)]
    return [f"adapters/{STATE}: {str(n)[:80]!r} is not a plain adapter name" for n in bad]


def verify(src: Path) -> dict[str, Any]:
    """Check a backup folder completely (names, links, checksums, the database); return its manifest.

    Reads only: nothing in the backup or the live install changes. Raises BackupError naming every problem.
    """
    src = Path(src).resolve()  # the operator's own path may be a link (`latest -> nightly-...`); nothing inside
    if not src.is_dir():
        raise BackupError(f"{src} is not a folder")
    manifest_path = src / MANIFEST
    try:
        if stat.S_ISLNK(manifest_path.lstat().st_mode):
            raise BackupError(f"{manifest_path} is a symbolic link; a backup holds none")
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise BackupError(f"{src} has no {MANIFEST}: not a Kilroy backup (or an unfinished one)") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise BackupError(f"{manifest_path} is not valid JSON: {exc}") from exc
    known = isinstance(manifest, dict) and manifest.get("format") == FORMAT
    if not known or not isinstance(manifest.get("files"), dict):
        raise BackupError(f"{manifest_path} has an unknown format; this Kilroy reads format {FORMAT}")
    problems: list[str] = []
    adapters = manifest.get("adapters", [])
    if not isinstance(adapters, list):
        problems.append("adapters: not a list")
        adapters = []
    for name in adapters:
        if not _adapter_name(name):
            problems.append(f"adapters: {str(name)[:80]!r} is not a plain adapter name")
    names = {n for n in adapters if _adapter_name(n)}
    current = manifest.get("current", BASE)
    if current != BASE and not _adapter_name(current):
        problems.append(f"current: {str(current)[:80]!r} is not a plain adapter name")
    files: dict[str, Any] = manifest["files"]
    for rel, info in sorted(files.items(), key=lambda kv: str(kv[0])):
        p = plain_name(rel)
        if p is None:
            problems.append(f"{str(rel)[:120]!r}: not a plain relative name inside the backup")
        elif not (
            rel in (DB_NAME, DUMP_NAME, f"adapters/{STATE}")
            or (len(p.parts) >= 3 and p.parts[0] == "adapters" and p.parts[1] in names)
        ):
            problems.append(
                f"{rel}: not a file a backup holds (kilroy.db or kilroy.pgdump, adapters/STATE.json, a listed adapter)"
            )
        elif not isinstance(info, dict):
            problems.append(f"{rel}: no checksum")
    for path, st in _entries(src):
        rel = path.relative_to(src).as_posix()
        if stat.S_ISLNK(st.st_mode):
            problems.append(f"{rel}: a symbolic link (a backup holds none)")
        elif stat.S_ISDIR(st.st_mode):
            parts = rel.split("/")
            if parts[0] != "adapters" or (len(parts) == 2 and parts[1] not in names):
                problems.append(f"{rel}: a folder the manifest does not list")
        elif not stat.S_ISREG(st.st_mode):
            problems.append(f"{rel}: not a regular file")
        elif rel != MANIFEST and rel not in files:
            problems.append(f"{rel}: not in the manifest")
    for name in sorted(names):
        folder = src / "adapters" / name
        if not folder.is_dir() or folder.is_symlink():
            problems.append(f"adapters/{name}: listed in the manifest but missing")
        elif not any(str(r).startswith(f"adapters/{name}/") for r in files):
            problems.append(f"adapters/{name}: listed in the manifest without any file")
    if (DB_NAME in files) == (DUMP_NAME in files):
        problems.append(f"{DB_NAME} or {DUMP_NAME} (one of them): not in the manifest")
    if problems:  # stop here: nothing below may read a file through a bad name or a link
        raise BackupError("the backup does not match its manifest:\n  " + "\n  ".join(problems))
    for rel, info in sorted(files.items()):
        path = src / rel
        if not path.is_file():
            problems.append(f"{rel}: missing")
        elif path.stat().st_size != info.get("bytes") or _sha256(path) != info.get("sha256"):
            problems.append(f"{rel}: checksum differs (the file changed or is damaged)")
    if not problems and f"adapters/{STATE}" in files:
        problems += _check_state(src / "adapters" / STATE)
    if problems:
        raise BackupError("the backup does not match its manifest:\n  " + "\n  ".join(problems))
    if DUMP_NAME in files:
        from bot.ops.pg_backup import DumpError, check_dump
        from bot.storage import migrations

        try:
            schema = check_dump(src / DUMP_NAME, what=f"{DUMP_NAME} in the backup")
        except DumpError as exc:
            raise BackupError(str(exc)) from exc
        if schema > max(n for n, _ in migrations("postgresql")):
            raise BackupError(f"{DUMP_NAME} in the backup has schema {schema}, newer than this Kilroy knows")
        return manifest
    try:
        check_database(src / DB_NAME, what=f"{DB_NAME} in the backup")
    except DamagedDatabase as exc:
        raise BackupError(str(exc)) from exc
    return manifest


# --- automatic backups ---------------------------------------------------------------------------------------------


def prune(backup_dir: Path, keep: int) -> list[Path]:
    """Delete the oldest automatic backups (`nightly-*`) beyond `keep`; return those removed.

    The newest backup whose database passed its integrity check is never removed, even when newer ones are not
    (older Kilroy versions wrote backups without checking).
    """
    found = sorted(p for p in Path(backup_dir).glob("nightly-*") if (p / MANIFEST).is_file())
    removed = found[:-keep] if keep > 0 else []
    good = [p for p in found if _checked(p)]
    if good and good[-1] in removed:
        removed.remove(good[-1])
    for p in removed:
        shutil.rmtree(p, ignore_errors=True)
    return removed


def _checked(backup_dir: Path) -> bool:
    with contextlib.suppress(OSError, ValueError):
        return json.loads((backup_dir / MANIFEST).read_text(encoding="utf-8")).get("integrity") == "ok"
    return False


def clean_partials(backup_dir: Path) -> list[Path]:
    """Remove the unfinished `.nightly-*.partial` folders a killed backup left (they hold a database copy)."""
    removed = []
    for p in Path(backup_dir).glob(f".nightly-*{PARTIAL}"):
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    return removed


def nightly_backup(settings: Settings) -> Path | None:
    """The automatic backup before a night's training, when KILROY_BACKUP_DIR is set; keeps the last N."""
    root = settings.ops.backup_dir
    if root is None:
        return None
    if not Path(root).exists():
        private_dir(Path(root))
    for p in clean_partials(Path(root)):
        log.info("removed an unfinished backup %s", p)
    dest = Path(root) / f"nightly-{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%SZ')}"
    backup(settings, dest)  # raises on a damaged database: then nothing is pruned
    prune(Path(root), settings.ops.backup_keep)
    return dest
