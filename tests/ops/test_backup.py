"""Backups: a consistent snapshot with a manifest; restore verifies, refuses under a lock, moves files aside."""

from __future__ import annotations

import json
import shutil
import sqlite3
import time

import pytest

from bot.ops.backup import BackupError, RunLock, backup, prune, restore, verify
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
    with pytest.raises(BackupError, match=r"integrity|not a readable database"):
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
    aside = list(setup.db_path.parent.glob("kilroy.db.replaced-*"))
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
