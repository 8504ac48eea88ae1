import json
import os

import pytest

from bot.adapters.lineages import Lineages
from bot.adapters.migrate import MARKER, flat_versions, migrate_flat, migrated
from bot.adapters.store import AdapterStore
from tests.adapters.test_store import fake_adapter


def flat_folder(root):
    """A pre-communities adapters folder: three versions, a pointer with history, a reward model."""
    store = AdapterStore(root)
    names = [fake_adapter(store) for _ in range(3)]
    store.set_current(names[0])
    store.set_current(names[1])
    store.set_current(names[2])
    store.rollback()  # serving v0002, history [base, v0001]
    (root / "reward_model.json").write_text(json.dumps({"bias": 1.0}))
    return names


def test_the_flat_folder_becomes_the_lineage_of_every_server_and_the_commons(tmp_path):
    root = tmp_path / "adapters"
    names = flat_folder(root)
    done = migrate_flat(root, ["g1", "g2"])
    assert done and flat_versions(root) == [] and not (root / "STATE.json").exists()
    assert migrated(root)["migrated"] == ["commons", "g1", "g2"]
    lineages = Lineages(root)
    for community in ("g1", "g2", "commons"):
        store = lineages.store(community)
        assert store.names() == names
        assert store.current() == "v0002" and store.history() == ["base", "v0001"]
        assert (store.root / "reward_model.json").read_text() == json.dumps({"bias": 1.0})
        store.path("v0003")  # whole and valid
    # hard links: the weights are stored once
    a = lineages.store("g1").root / "v0001" / "adapter_model.safetensors"
    b = lineages.store("g2").root / "v0001" / "adapter_model.safetensors"
    assert os.stat(a).st_ino == os.stat(b).st_ino
    # rollback keeps working per lineage, independently
    assert lineages.store("g1").rollback() == "v0001"
    assert lineages.store("g2").current() == "v0002"
    assert lineages.serving("g3") == "commons/v0002"  # a server that never posted: the commons (the old adapter)


def test_a_second_run_changes_nothing(tmp_path):
    root = tmp_path / "adapters"
    flat_folder(root)
    migrate_flat(root, ["g1"])
    Lineages(root).store("g1").set_current("v0003")
    assert migrate_flat(root, ["g1", "g5"]) == []
    assert Lineages(root).current("g1") == "g1/v0003" and not (root / "g5").exists()


def test_a_fresh_folder_needs_no_migration(tmp_path):
    root = tmp_path / "adapters"
    root.mkdir()
    assert migrate_flat(root, ["g1"]) == [] and not (root / MARKER).exists()


@pytest.mark.parametrize("crash_after", [1, 2, 3])
def test_a_crash_midway_is_finished_by_the_next_start(tmp_path, monkeypatch, crash_after):
    """Killed after some versions were linked: the next run completes every lineage, pointers included."""
    import bot.adapters.migrate as m

    root = tmp_path / "adapters"
    names = flat_folder(root)
    calls = {"n": 0}
    real = m._fsync_tree

    def dying(folder):
        calls["n"] += 1
        if calls["n"] > crash_after:
            raise KeyboardInterrupt("killed")
        real(folder)

    monkeypatch.setattr(m, "_fsync_tree", dying)
    with pytest.raises(KeyboardInterrupt):
        migrate_flat(root, ["g1", "g2"])
    assert flat_versions(root) == names and not (root / MARKER).exists()  # nothing removed before done
    assert not (root / "g1" / "STATE.json").exists()  # no pointer on a half-copied lineage
    monkeypatch.setattr(m, "_fsync_tree", real)
    migrate_flat(root, ["g1", "g2"])
    for community in ("g1", "g2", "commons"):
        store = Lineages(root).store(community)
        assert store.names() == names and store.current() == "v0002"
        assert not list(store.root.glob(".tmp-*"))


async def test_a_pre_communities_data_folder_opens_migrated(make_settings):
    """A data folder as the flat layout left it (schema 8, adapters/vNNNN, posts from two servers): the shell's
    services migrate the database and the adapters; each server's pointer, history and rollback keep working."""
    import sqlite3

    from bot.services import open_shell_services
    from bot.storage import migrations

    settings = make_settings()
    names = flat_folder(settings.adapters_dir)
    settings.db_path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(settings.db_path) as db:
        for number, sql in migrations():
            if number <= 8:
                db.executescript(sql)
        db.execute("PRAGMA user_version = 8")
        for mid, guild, adapter in ((1, 11, "v0001"), (2, 22, "v0002"), (3, 22, "base")):
            db.execute(
                "INSERT INTO posts (message_id, channel_id, guild_id, kind, text, adapter, created_at) "
                "VALUES (?, 1, ?, 'post', 't', ?, 1.0)",
                (mid, guild, adapter),
            )
    async with open_shell_services(settings) as services:
        lineages = services.communities.lineages
        assert lineages.communities() == ["commons", "g11", "g22"]
        for community in ("g11", "g22", "commons"):
            assert lineages.current(community) == f"{community}/v0002"
            assert lineages.store(community).names() == names
        assert services.adapter_store.root == settings.adapters_dir / "commons"
        assert lineages.store("g22").rollback() == "v0001" and lineages.serving("g11") == "g11/v0002"
        rows = await services.storage.db.execute_fetchall("SELECT adapter FROM posts ORDER BY message_id")
        assert [a for (a,) in rows] == ["g11/v0001", "g22/v0002", "base"]
    assert flat_versions(settings.adapters_dir) == []
