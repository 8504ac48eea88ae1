"""`kilroy restore`: a checked backup put in place all or nothing, with the opt-outs recorded since re-applied.

The order, each step safe to be killed after:
1. `verify()` the whole backup (bot/ops/backup.py). A refusal changes nothing, in the backup or the install.
2. Take the bot's run lock and the training lock; finish or undo an earlier interrupted restore.
3. Stage beside the live files: the database as `.kilroy.db.restoring-<stamp>`, the adapters and STATE.json in
   `adapters/.restoring-<stamp>/`, each file copied with its checksum checked again. In the staged database,
   every member the live database records as opted out is forgotten again and their opt-out recorded: a restore
   never brings back a member who used /forget-me after the backup was taken.
4. Write the journal `.kilroy.db.restore.json` (fsynced, renamed into place): the point of no return.
5. Swap, by renames only: the live database (its -wal and -shm first) and each replaced adapter moved aside
   (`kilroy.db.replaced-<stamp>`, `adapters/.replaced-<stamp>/`), the staged ones renamed in, STATE.json last.
6. Remove the journal.

On PostgreSQL (a backup holding `kilroy.pgdump`) the dump is staged instead (`.kilroy.pgdump.restoring-<stamp>`
beside the SQLite path), the replaced database's privacy key and opt-out hashes go into the journal, and step 5
first replaces the database with `pg_restore --clean --single-transaction`, forgets those members again and scrubs
the staged adapters, then removes the staged dump: killed before that, the next start does it all again (the same
result). It refuses while any other client is connected to the database (a bot or worker on another machine).

Killed before 4, the install is untouched and the next start (`kilroy run`, `kilroy restore`) removes the staged
copies. Killed after 4, the next start walks the swap to its end from the journal. Either way it is the old
install or the new one, never a mix.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import shutil
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bot.adapters.lineages import Lineages
from bot.adapters.store import AdapterStore, fsync_dir, validate_name
from bot.config.settings import Settings
from bot.ops.backup import (
    DB_NAME,
    DUMP_NAME,
    STATE,
    BackupError,
    RunLock,
    check_database,
    copy_private,
    private_dir,
    verify,
    write_private,
)
from bot.ops.pg_backup import check_dump
from bot.storage.privacy import FORGOTTEN
from bot.training.lock import TrainingBusy, TrainingLock

log = logging.getLogger(__name__)

Step = Callable[[str], None]


def _paths(settings: Settings, stamp: str) -> dict[str, Path]:
    db, adapters = Path(settings.db_path), Path(settings.adapters_dir)
    return {
        "db": db,
        "staged_db": db.with_name(f".{db.name}.restoring-{stamp}"),
        "staged_dump": db.with_name(f".{DUMP_NAME}.restoring-{stamp}"),
        "aside_db": db.with_name(f"{db.name}.replaced-{stamp}"),
        "journal": db.with_name(f".{db.name}.restore.json"),
        "adapters": adapters,
        "staged": adapters / f".restoring-{stamp}",
        "aside": adapters / f".replaced-{stamp}",
    }


@contextlib.contextmanager
def exclusive(settings: Settings) -> Iterator[None]:
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


# --- opt-outs ------------------------------------------------------------------------------------------------------


def live_opt_outs(db: Path, scratch: Path) -> tuple[bytes, set[str]] | None:
    """(privacy key, opted-out hashes) of the live database, or None when there is none or it cannot be read.

    Read from a copy (with its -wal, so recent opt-outs count): opening the live file would create -wal and -shm
    files beside it, and the live install must stay as it was until the swap.
    """
    if not db.is_file():
        return None
    scratch.mkdir(mode=0o700)
    try:
        for suffix in ("", "-wal"):
            if Path(f"{db}{suffix}").is_file():
                shutil.copyfile(f"{db}{suffix}", scratch / f"live.db{suffix}")
        con = sqlite3.connect(scratch / "live.db")
        try:
            key = con.execute("SELECT key FROM privacy_key WHERE id = 1").fetchone()
            hashes = {str(r[0]) for r in con.execute("SELECT member_hash FROM opt_outs")}
        finally:
            con.close()
        return (str(key[0]).encode() if key else b""), hashes
    except sqlite3.DatabaseError as exc:
        log.warning("restore: the live database cannot be read (%s); its opt-outs cannot be re-applied", exc)
        return None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


_MEMBER_COLUMNS = (
    ("votes", "member_id"),
    ("reaction_events", "member_id"),
    ("replies", "member_id"),
    ("story_lines", "member_id"),
    ("stories", "started_by"),
    ("audit_log", "actor_id"),
)


def reapply_opt_outs(staged_db: Path, live: tuple[bytes, set[str]]) -> tuple[dict[str, int], list[int]]:
    """Forget again, in the staged database, every member the live one records as opted out; carry the opt-outs.

    Returns the counts and the members forgotten (their ids are scrubbed from the staged adapters' metadata too).
    The staged database is migrated to this version's schema on the way (the next start would do it anyway).
    """
    key, hashes = live
    result: dict[str, int] = {"members forgotten": 0, "opt-outs carried": 0, "opt-outs not carried": 0}
    box: dict[str, Any] = {}
    forgotten: list[int] = []

    async def work() -> None:
        from bot.storage import Storage

        async with Storage.open(staged_db) as storage:
            await _reapply_into(storage, key, hashes, result, forgotten)
            await storage.checkpoint()
        con = sqlite3.connect(staged_db)  # one self-contained file again: no -wal may follow it into place
        try:
            con.execute("PRAGMA journal_mode=DELETE")
        finally:
            con.close()

    def run() -> None:
        try:
            asyncio.run(work())
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=run, name="kilroy-restore-optouts")  # callable from inside a running loop
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return result, forgotten


async def _reapply_into(
    storage: Any, key: bytes, hashes: set[str], result: dict[str, int], forgotten: list[int]
) -> None:
    """Forget again in `storage` every member whose keyed hash is in `hashes`; carry the opt-outs if the key is the
    same (one database lineage)."""
    ids: set[int] = set()
    for table, column in _MEMBER_COLUMNS:
        async with storage.db.execute(f"SELECT DISTINCT {column} FROM {table} WHERE {column} IS NOT NULL") as c:
            ids |= {int(r[0]) for r in await c.fetchall()}
    for mid in sorted(ids):
        if hmac.new(key, str(mid).encode(), hashlib.sha256).hexdigest() in hashes:
            await storage.forget_member(mid)
            forgotten.append(mid)
    result["members forgotten"] = len(forgotten)
    async with storage.db.execute("SELECT key FROM privacy_key WHERE id = 1") as c:
        row = await c.fetchone()
    if row is not None and str(row[0]).encode() == key:  # one database lineage: the hashes mean the same
        async with storage.transaction():
            for digest in sorted(hashes):
                await storage.db.execute(
                    "INSERT INTO opt_outs (member_hash, at) VALUES (?, 0) ON CONFLICT DO NOTHING", (digest,)
                )
        result["opt-outs carried"] = len(hashes)
    else:  # another database: hashes under another key name nobody here; their members were forgotten above
        result["opt-outs not carried"] = len(hashes)


def _in_thread(make: Callable[[], Any]) -> Any:
    """Run the coroutine `make()` returns to completion on a thread of its own (callable inside a running loop)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = asyncio.run(make())
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=run, name="kilroy-restore")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


async def _live_opt_outs_pg(url: str) -> tuple[bytes, set[str]] | None:
    """(privacy key, opted-out hashes) of the PostgreSQL database about to be replaced; None if it has no tables."""
    from bot.storage._conn import PostgresConnection

    con = await PostgresConnection.connect(url)
    try:
        if not (await con.execute_fetchall("SELECT to_regclass('opt_outs') IS NOT NULL"))[0][0]:
            return None
        key = await con.execute_fetchall("SELECT key FROM privacy_key WHERE id = 1")
        hashes = {str(r[0]) for r in await con.execute_fetchall("SELECT member_hash FROM opt_outs")}
        return (str(key[0][0]).encode() if key else b""), hashes
    finally:
        await con.close()


async def _reapply_pg(url: str, live: tuple[bytes, set[str]]) -> tuple[dict[str, int], list[int]]:
    from bot.storage import Storage

    result: dict[str, int] = {"members forgotten": 0, "opt-outs carried": 0, "opt-outs not carried": 0}
    forgotten: list[int] = []
    async with Storage.open(url) as storage:
        await _reapply_into(storage, live[0], live[1], result, forgotten)
    return result, forgotten


def _only_session(settings: Settings) -> None:
    """Refuse while another client is connected to the PostgreSQL database (a bot or worker on another machine: the
    run lock only covers this one)."""
    from bot.storage._conn import PostgresConnection

    async def others() -> int:
        con = await PostgresConnection.connect(settings.database_url.get())
        try:
            rows = await con.execute_fetchall(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
            )
            return int(rows[0][0])
        finally:
            await con.close()

    try:
        n = _in_thread(others)
    except ConnectionError as exc:
        raise BackupError(str(exc)) from exc
    if n:
        raise BackupError(
            f"{n} other connection(s) to {settings.database_shown}: stop every bot and worker using it, then restore"
        )


# --- restore -------------------------------------------------------------------------------------------------------


def restore(settings: Settings, src: Path, *, on_step: Step | None = None) -> dict[str, Any]:
    """Verify `src`, then put its database, adapters and pointer in place, all or nothing (see the module doc)."""
    step = on_step or (lambda name: None)
    src = Path(src).resolve()
    manifest = verify(src)
    postgres = DUMP_NAME in manifest["files"]
    if postgres and not settings.database_url:
        raise BackupError(
            f"{src} is a backup of a PostgreSQL database ({DUMP_NAME}); this install runs on SQLite: set "
            "KILROY_DATABASE_URL to the (empty or replaceable) database to restore it into"
        )
    if settings.database_url and not postgres:
        raise BackupError(
            f"this install runs on PostgreSQL ({settings.database_shown}): restoring the SQLite backup {src} into "
            f"{settings.db_path} would not be seen; restore it with KILROY_DATABASE_URL unset, then copy it over with "
            "`kilroy migrate-db`"
        )
    names = [validate_name(n) for n in manifest.get("adapters", [])]
    with exclusive(settings):
        recovered = recover(settings)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        p = _paths(settings, stamp)
        if not p["db"].parent.exists():
            private_dir(p["db"].parent)
        if not p["adapters"].exists():
            private_dir(p["adapters"])
        files = manifest["files"]
        pg_live: tuple[bytes, set[str]] | None = None
        try:
            if postgres:  # the dump is staged; it replaces the database after the journal (_swap)
                _only_session(settings)
                copy_private(src / DUMP_NAME, p["staged_dump"], expect=files[DUMP_NAME]["sha256"])
                check_dump(p["staged_dump"], what="the staged dump")
                step("stage database")
                pg_live = _in_thread(lambda: _live_opt_outs_pg(settings.database_url.get()))
                reapplied, forgotten = None, []
            else:
                copy_private(src / DB_NAME, p["staged_db"], expect=files[DB_NAME]["sha256"])
                check_database(p["staged_db"], what="the staged database")
                step("stage database")
                live = live_opt_outs(p["db"], p["db"].with_name(f".{p['db'].name}.optouts-{stamp}"))
                reapplied, forgotten = reapply_opt_outs(p["staged_db"], live) if live is not None else (None, [])
                step("re-apply opt-outs")
            private_dir(p["staged"])
            for rel in sorted(r for r in files if r.startswith("adapters/")):
                target = p["staged"] / rel.removeprefix("adapters/")
                private_dir(target.parent)
                copy_private(src / rel, target, expect=files[rel]["sha256"])
            staged_store = AdapterStore(p["staged"])
            staged_lineages = Lineages(p["staged"])
            for mid in forgotten:  # as /forget-me does for the live adapters (flat ones, and every lineage's)
                staged_store.scrub(str(mid), FORGOTTEN)
                staged_lineages.scrub(str(mid), FORGOTTEN)
            step("stage adapters")
        except BaseException:
            _undo(p)
            raise
        journal: dict[str, Any] = {
            "stamp": stamp,
            "source": str(src),
            "adapters": names,
            "state": f"adapters/{STATE}" in files,
        }
        if postgres:  # what re-applying needs after the replace: the replaced database's key and opt-out hashes
            journal["postgresql"] = {
                "opt_outs": None if pg_live is None else {"key": pg_live[0].hex(), "hashes": sorted(pg_live[1])}
            }
        tmp = p["journal"].with_name(p["journal"].name + ".tmp")
        write_private(tmp, json.dumps(journal))
        os.replace(tmp, p["journal"])
        fsync_dir(p["journal"].parent)
        step("journal")
        moved = _swap(settings, journal, step)
        reapplied = journal.get("reapplied", reapplied)
    log.info(
        "restored %s (%d posts, serving %s); opt-outs re-applied: %s; moved aside: %s",
        src,
        manifest.get("posts", 0),
        manifest.get("current"),
        reapplied if reapplied is not None else "none (no readable live database)",
        moved or "nothing",
    )
    return {**manifest, "moved_aside": moved, "opt_outs": reapplied, "recovered": recovered}


def _swap(settings: Settings, journal: dict[str, Any], step: Step) -> list[str]:
    """The renames of a journaled restore, each skipped when already done: run again, it finishes the swap."""
    p = _paths(settings, str(journal["stamp"]))
    moved: list[str] = []
    if "postgresql" in journal and p["staged_dump"].exists():
        # replace the database (one transaction), forget again, scrub the staged adapters; all of it again if we
        # are killed before the staged dump is removed
        from bot.ops.pg_backup import restore_dump

        url = settings.database_url.get()
        if not url:
            raise BackupError("an interrupted PostgreSQL restore waits: set KILROY_DATABASE_URL, then run again")
        restore_dump(url, p["staged_dump"])
        step("database replaced")
        carried = journal["postgresql"].get("opt_outs")
        if carried is not None:
            live = (bytes.fromhex(carried["key"]), set(carried["hashes"]))
            result, forgotten = _in_thread(lambda: _reapply_pg(url, live))
            journal["reapplied"] = result
            staged_store = AdapterStore(p["staged"])
            for mid in forgotten:
                if p["staged"].exists():
                    staged_store.scrub(str(mid), FORGOTTEN)
        step("re-apply opt-outs")
        p["staged_dump"].unlink()
        fsync_dir(p["staged_dump"].parent)
    if p["staged_db"].exists():
        # the -wal and -shm first: an old -wal beside the new database would be replayed into it
        for suffix in ("-wal", "-shm", ""):
            live = Path(f"{p['db']}{suffix}")
            if live.exists():
                os.replace(live, Path(f"{p['aside_db']}{suffix}"))
                moved.append(f"{p['aside_db']}{suffix}")
                step(f"move aside {DB_NAME}{suffix}")
        os.replace(p["staged_db"], p["db"])
        fsync_dir(p["db"].parent)
        step("database in place")
    entries = [validate_name(n) for n in journal.get("adapters", [])] + ([STATE] if journal.get("state") else [])
    for name in entries:  # STATE.json last: the pointer moves after the adapters it names are there
        staged, live = p["staged"] / name, p["adapters"] / name
        if not staged.exists():
            continue
        if live.exists() or live.is_symlink():
            private_dir(p["aside"])
            os.replace(live, p["aside"] / name)
            moved.append(str(p["aside"] / name))
            step(f"move aside {name}")
        os.replace(staged, live)
        fsync_dir(p["adapters"])
        step(f"{name} in place")
    p["journal"].unlink(missing_ok=True)
    fsync_dir(p["journal"].parent)
    shutil.rmtree(p["staged"], ignore_errors=True)
    step("done")
    return moved


def _undo(p: dict[str, Path]) -> None:
    """Remove what a failed staging wrote (the live install was not touched)."""
    p["staged_dump"].unlink(missing_ok=True)
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{p['staged_db']}{suffix}").unlink(missing_ok=True)
    shutil.rmtree(p["staged"], ignore_errors=True)


def recover(settings: Settings) -> str | None:
    """Finish (journal written) or undo (no journal) a restore that was interrupted; say what was done, or None.

    Call with the run lock and the training lock held (`kilroy restore` and `kilroy run` do, at start).
    """
    db, adapters = Path(settings.db_path), Path(settings.adapters_dir)
    journal_path = db.with_name(f".{db.name}.restore.json")
    if journal_path.exists():
        try:
            journal = json.loads(journal_path.read_text(encoding="utf-8"))
            stamp = str(journal["stamp"])
            if not stamp.replace("T", "").replace("Z", "").isdigit():
                raise ValueError(f"bad stamp {stamp[:40]!r}")
        except (ValueError, KeyError, TypeError) as exc:
            raise BackupError(f"{journal_path} is damaged ({exc}); move it away and restore again") from exc
        _swap(settings, journal, lambda name: None)
        message = f"finished an interrupted restore of {journal.get('source')} (stamp {stamp})"
        log.warning("%s", message)
        return message
    leftovers = [
        *db.parent.glob(f".{db.name}.restoring-*"),
        *db.parent.glob(f".{db.name}.optouts-*"),
        *db.parent.glob(f".{DUMP_NAME}.restoring-*"),
    ]
    if adapters.is_dir():
        leftovers += list(adapters.glob(".restoring-*"))
    if not leftovers:
        return None
    for path in leftovers:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    message = "undid an unfinished restore: removed its staged copies (the install had not been touched)"
    log.warning("%s", message)
    return message


def pending(settings: Settings) -> str | None:
    """What an interrupted restore left, for `kilroy doctor`; None when there is nothing."""
    db, adapters = Path(settings.db_path), Path(settings.adapters_dir)
    if db.with_name(f".{db.name}.restore.json").exists():
        return "an interrupted restore (journal written): the next `kilroy run` or `kilroy restore` finishes it"
    staged = [*db.parent.glob(f".{db.name}.restoring-*"), *db.parent.glob(f".{DUMP_NAME}.restoring-*")]
    if adapters.is_dir():
        staged += list(adapters.glob(".restoring-*"))
    if staged:
        return "staged copies of an unfinished restore (the install is the old one): the next start removes them"
    return None


def recover_at_start(settings: Settings) -> str | None:
    """For `kilroy run`, holding the run lock: take the training lock briefly and recover; never raises."""
    lock = TrainingLock(settings.adapters_dir)
    try:
        with lock.hold("kilroy run (restore check)"):
            return recover(settings)
    except TrainingBusy:
        log.warning("a training holds its lock; an interrupted restore, if any, is finished at the next start")
    except Exception:
        log.exception("could not finish or undo an interrupted restore; see `kilroy doctor`")
    return None
