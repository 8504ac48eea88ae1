"""Backups: a consistent snapshot with a manifest; restore verifies, refuses under a lock, moves files aside."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import time

import pytest

from bot.cli.main import main
from bot.ops.backup import BackupError, DamagedDatabase, RunLock, backup, nightly_backup, prune, verify
from bot.ops.restore import restore
from bot.storage import NewPost, Storage
from bot.training.lock import TrainingLock
from tests.support.adapters import fake_adapter
from tests.support.storage import number_of_posts


@pytest.fixture
async def setup(make_settings, tmp_path):
    settings = make_settings()
    async with Storage.open(settings.db_path) as storage:
        for i in range(5):
            await storage.add_post(
                NewPost(channel_id=1, text=f"p{i}", adapter="v0001", created_at=time.time(), message_id=100 + i)
            )
    fake_adapter(settings.adapters_dir, "v0001")
    fake_adapter(settings.adapters_dir, "v0002")
    fake_adapter(settings.adapters_dir, "v0003")  # not named by the pointer: not backed up
    (settings.adapters_dir / "STATE.json").write_text(json.dumps({"current": "v0002", "history": ["base", "v0001"]}))
    return settings


def count_posts(path) -> int:
    con = sqlite3.connect(path)
    try:
        return con.execute("SELECT COUNT(*) FROM posts").fetchone()[0]
    finally:
        con.close()


async def test_backup_writes_db_named_adapters_state_and_manifest(setup, tmp_path):
    result = backup(setup, tmp_path / "b1")
    manifest = verify(tmp_path / "b1")
    assert sorted(result.adapters) == ["v0001", "v0002"] and manifest["current"] == "v0002" and manifest["posts"] == 5
    assert "kilroy.db" in manifest["files"] and "adapters/STATE.json" in manifest["files"]
    assert not (tmp_path / "b1" / "adapters" / "v0003").exists()
    with pytest.raises(BackupError, match="not empty"):
        backup(setup, tmp_path / "b1")


async def test_backup_while_a_writer_is_busy_is_consistent(setup, tmp_path):
    """Posts committed before the backup started are all in it, with another connection writing meanwhile."""
    async with Storage.open(setup.db_path) as storage:
        import asyncio

        async def writer():
            for i in range(200):
                await storage.add_post(NewPost(channel_id=1, text=f"w{i}", adapter="base", created_at=time.time()))

        before = await number_of_posts(storage)
        task = asyncio.create_task(writer())
        await asyncio.sleep(0.01)
        await asyncio.to_thread(backup, setup, tmp_path / "b")
        await task
    verify(tmp_path / "b")
    assert count_posts(tmp_path / "b" / "kilroy.db") >= before


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda b: (b / "adapters" / "v0001" / "adapter_config.json").write_text("{ }"), "checksum differs"),
        (lambda b: (b / "adapters" / "v0002" / "meta.json").unlink(), "missing"),
        (lambda b: (b / "stray.txt").write_text("x"), "not in the manifest"),
        (lambda b: (b / "manifest.json").unlink(), "no manifest.json"),
        (lambda b: (b / "manifest.json").write_text("{"), "not valid JSON"),
    ],
)
async def test_verify_names_what_is_wrong(setup, tmp_path, damage, message):
    backup(setup, tmp_path / "b")
    damage(tmp_path / "b")
    with pytest.raises(BackupError, match=message):
        verify(tmp_path / "b")


async def test_verify_runs_integrity_check(setup, tmp_path):
    """A database that matches a (rewritten) manifest but is damaged inside is still refused."""
    backup(setup, tmp_path / "b")
    db = tmp_path / "b" / "kilroy.db"
    con = sqlite3.connect(db)
    root, page_size = con.execute("SELECT rootpage FROM sqlite_master WHERE name = 'posts'").fetchone()[0], 4096
    page_size = con.execute("PRAGMA page_size").fetchone()[0]
    con.close()
    raw = bytearray(db.read_bytes())
    start = (root - 1) * page_size
    raw[start : start + 16] = b"\x0d\x00\x00\xff\xff" + b"\xff" * 11  # a leaf page header claiming impossible cells
    db.write_bytes(bytes(raw))
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    import hashlib

    manifest["files"]["kilroy.db"] = {"sha256": hashlib.sha256(raw).hexdigest(), "bytes": len(raw)}
    (tmp_path / "b" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BackupError, match=r"integrity|not a readable (Kilroy )?database"):
        verify(tmp_path / "b")


async def test_restore_over_a_corrupt_db_moves_it_aside(setup, tmp_path):
    backup(setup, tmp_path / "b")
    setup.db_path.write_bytes(b"garbage" * 1000)
    shutil.rmtree(setup.adapters_dir / "v0002")
    (setup.adapters_dir / "STATE.json").write_text("{}")
    result = restore(setup, tmp_path / "b")
    assert count_posts(setup.db_path) == 5
    assert json.loads((setup.adapters_dir / "STATE.json").read_text())["current"] == "v0002"
    assert (setup.adapters_dir / "v0002" / "adapter_model.safetensors").is_file()
    aside = list(setup.db_path.parent.glob("kilroy.db.replaced-*Z"))  # not its -wal or -shm
    assert aside and aside[0].read_bytes().startswith(b"garbage")  # moved aside, not deleted
    assert any("STATE.json" in m for m in result["moved_aside"])
    async with Storage.open(setup.db_path) as storage:  # the restored database opens and migrates
        assert await number_of_posts(storage) == 5


async def test_restore_refuses_while_a_bot_or_training_holds_its_lock(setup, tmp_path):
    backup(setup, tmp_path / "b")
    with RunLock(setup.data_dir).hold("kilroy run"), pytest.raises(BackupError, match="bot is running"):
        restore(setup, tmp_path / "b")
    with TrainingLock(setup.adapters_dir).hold("training"), pytest.raises(BackupError, match="training holds"):
        restore(setup, tmp_path / "b")
    assert count_posts(setup.db_path) == 5  # untouched by the refusals
    assert not list(setup.db_path.parent.glob("*.replaced-*"))


async def test_prune_keeps_the_newest(setup, tmp_path):
    for stamp in ("20260101T000000Z", "20260102T000000Z", "20260103T000000Z"):
        backup(setup, tmp_path / "nightly" / f"nightly-{stamp}")
    removed = prune(tmp_path / "nightly", keep=2)
    assert [p.name for p in removed] == ["nightly-20260101T000000Z"]
    assert len(list((tmp_path / "nightly").iterdir())) == 2


def damage(db) -> None:
    """Break the posts table's root page: the file still opens, integrity_check fails."""
    con = sqlite3.connect(db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    root = con.execute("SELECT rootpage FROM sqlite_master WHERE name = 'posts'").fetchone()[0]
    page_size = con.execute("PRAGMA page_size").fetchone()[0]
    con.close()
    raw = bytearray(db.read_bytes())
    raw[(root - 1) * page_size : (root - 1) * page_size + 16] = b"\x0d\x00\x00\xff\xff" + b"\xff" * 11
    db.write_bytes(bytes(raw))


def cli(settings, *args):
    import os

    env = {"KILROY_DATA_DIR": str(settings.data_dir), "KILROY_ADAPTERS_DIR": str(settings.adapters_dir)}
    os.environ.update(env)
    try:
        return main(["--env-file", "/nonexistent", *args])
    finally:
        for k in env:
            os.environ.pop(k)


@pytest.mark.parametrize(
    "breakage",
    [damage, lambda db: db.write_text("not a database at all\n" * 200)],
    ids=["damaged database", "not a SQLite file"],
)
async def test_backup_of_a_bad_database_exits_1_and_writes_nothing(setup, tmp_path, capsys, breakage):
    """Regression (issue 23, item 7): a damaged database was backed up as if sound (found only at restore time,
    after good backups rotated out); a file that is not SQLite ended in a raw sqlite3.DatabaseError traceback."""
    breakage(setup.db_path)
    assert cli(setup, "backup", str(tmp_path / "bad")) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "Traceback" not in err and "older backups are kept" in err
    assert not (tmp_path / "bad").exists() and not list(tmp_path.glob(".bad*"))


async def test_the_last_good_backup_is_never_pruned_for_a_bad_one(setup, tmp_path):
    """A nightly backup of a damaged database fails before pruning; and prune spares the newest checked backup."""
    root = tmp_path / "nightly"
    settings = setup.__class__.from_env(
        {"KILROY_DATA_DIR": str(setup.data_dir), "KILROY_ADAPTERS_DIR": str(setup.adapters_dir),
         "KILROY_MODEL": "gpt2", "KILROY_BACKUP_DIR": str(root), "KILROY_BACKUP_KEEP": "1"}
    )  # fmt: skip
    good = nightly_backup(settings)
    damage(setup.db_path)
    await asyncio.sleep(1.1)  # a new second: a new nightly name
    with pytest.raises(DamagedDatabase):
        nightly_backup(settings)
    assert [p.name for p in root.iterdir()] == [good.name]
    # an unchecked (older Kilroy) backup newer than the good one: keep=1 still spares the good one
    legacy = root / "nightly-29990101T000000Z"
    shutil.copytree(good, legacy)
    manifest = json.loads((legacy / "manifest.json").read_text())
    manifest.pop("integrity")
    (legacy / "manifest.json").write_text(json.dumps(manifest))
    assert prune(root, keep=1) == []


async def test_a_killed_backups_partial_folder_is_removed_at_the_next_run(setup, tmp_path):
    """Regression (issue 23, item 5): kill -9 during the nightly backup left `.nightly-*.partial/` (a database
    copy) that no later run or pruning removed."""
    root = tmp_path / "nightly"
    partial = root / ".nightly-20260101T000000Z.partial"
    partial.mkdir(parents=True)
    shutil.copy(setup.db_path, partial / "kilroy.db")
    settings = setup.__class__.from_env(
        {"KILROY_DATA_DIR": str(setup.data_dir), "KILROY_ADAPTERS_DIR": str(setup.adapters_dir),
         "KILROY_MODEL": "gpt2", "KILROY_BACKUP_DIR": str(root)}
    )  # fmt: skip
    dest = nightly_backup(settings)
    assert sorted(p.name for p in root.iterdir()) == [dest.name]


async def test_backup_files_are_owner_only_whatever_the_umask(setup, tmp_path):
    """Regression (issue 23, item 5): backups were written 0644/0755, readable by every local user."""
    import os

    old = os.umask(0o022)
    try:
        backup(setup, tmp_path / "new" / "b")
    finally:
        os.umask(old)
    entries = [tmp_path / "new", *(tmp_path / "new").rglob("*")]
    modes = {str(p.relative_to(tmp_path)): p.stat().st_mode & 0o777 for p in entries}
    assert modes and all(m == (0o700 if (tmp_path / k).is_dir() else 0o600) for k, m in modes.items()), modes


async def test_the_live_database_and_adapters_folder_are_created_owner_only(tmp_path):
    """Issue 23, item 5: the live database was created 0644 and the adapters folder 0755 (umask 022)."""
    import os

    from bot.adapters.store import AdapterStore

    old = os.umask(0o022)
    try:
        store = AdapterStore(tmp_path / "live" / "adapters")
        async with Storage.open(tmp_path / "live" / "data" / "kilroy.db"):
            pass
    finally:
        os.umask(old)
    assert store.root.stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "live" / "data").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "live" / "data" / "kilroy.db").stat().st_mode & 0o777 == 0o600
