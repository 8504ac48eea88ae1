"""Backups, restores and `kilroy doctor` with a lineage per community (issue 24)."""

from __future__ import annotations

import json
import shutil
import time

from bot.adapters.lineages import Lineages
from bot.ops import doctor
from bot.ops.backup import backup, verify
from bot.ops.restore import restore
from bot.storage import NewPost, Storage
from tests.ops.test_doctor import by_name, clean_env, env_file  # noqa: F401 - fixtures
from tests.support.adapters import fake_adapter


def lineage(root, community, names, current):
    for name in names:
        fake_adapter(root / community, name)
    (root / community / "STATE.json").write_text(json.dumps({"current": current, "history": ["base"]}))
    (root / community / "reward_model.json").write_text("{}")
    (root / community / ".tmp-half-written").mkdir()


async def test_every_lineage_is_backed_up_and_restored_whole(make_settings, tmp_path):
    settings = make_settings()
    async with Storage.open(settings.db_path) as storage:
        await storage.add_post(NewPost(channel_id=1, text="p", adapter="g7/v0001", created_at=time.time()))
    lineage(settings.adapters_dir, "g7", ["v0001", "v0002"], "v0002")
    lineage(settings.adapters_dir, "commons", ["v0001"], "v0001")
    result = backup(settings, tmp_path / "b")
    manifest = verify(tmp_path / "b")
    assert {"commons", "g7"} <= set(result.adapters)
    assert "adapters/g7/v0002/adapter_model.safetensors" in manifest["files"]
    assert "adapters/g7/STATE.json" in manifest["files"] and "adapters/g7/reward_model.json" in manifest["files"]
    assert not any(".tmp" in f for f in manifest["files"])  # a half-written candidate is not a backup's business
    shutil.rmtree(settings.adapters_dir / "g7")
    restore(settings, tmp_path / "b")
    lineages = Lineages(settings.adapters_dir)
    assert lineages.serving("g7") == "g7/v0002" and lineages.store("g7").names() == ["v0001", "v0002"]
    assert lineages.serving("g9") == "commons/v0001"


def test_doctor_checks_each_lineage(env_file, tmp_path):  # noqa: F811
    root = tmp_path / "adapters"
    lineage(root, "g7", ["v0001"], "v0001")
    lineage(root, "commons", ["v0001"], "v0001")
    check = by_name(doctor.run_checks(env_file()))["adapters"]
    assert check.ok and "g7: 1 version(s)" in check.detail and "commons: 1 version(s)" in check.detail
    (root / "g7" / "STATE.json").write_text(json.dumps({"current": "v0009", "history": []}))
    check = by_name(doctor.run_checks(env_file()))["adapters"]
    assert not check.ok and "g7: the pointer names 'v0009'" in check.detail and check.fix


async def test_an_empty_lineage_folder_does_not_break_a_backup(make_settings, tmp_path):
    """A server that posted but has trained nothing has an empty lineage folder (only temp entries at most): the
    backup leaves it out and verifies (it listed it without files, and verification failed on a running bot)."""
    settings = make_settings()
    async with Storage.open(settings.db_path):
        pass
    lineage(settings.adapters_dir, "g7", ["v0001"], "v0001")
    (settings.adapters_dir / "g8" / ".tmp-half-written").mkdir(parents=True)
    (settings.adapters_dir / "commons").mkdir()
    result = backup(settings, tmp_path / "b")
    verify(tmp_path / "b")
    assert "g7" in result.adapters and "g8" not in result.adapters and "commons" not in result.adapters
