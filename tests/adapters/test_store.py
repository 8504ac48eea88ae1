import json

import pytest

from bot.adapters.store import (
    BASE,
    AdapterNotFound,
    AdapterStore,
    CorruptAdapter,
    InvalidAdapterName,
    NothingToRollBack,
    validate_name,
)


def fake_adapter(store: AdapterStore, name: str | None = None) -> str:
    """Write a minimal well-formed adapter folder (a real safetensors file, a config)."""
    import numpy as np
    from safetensors.numpy import save_file

    tmp = store.new_temp_dir()
    save_file({"w": np.zeros((2, 2), dtype=np.float32)}, str(tmp / "adapter_model.safetensors"))
    (tmp / "adapter_config.json").write_text(json.dumps({"r": 8}))
    return store.commit(tmp, {"created_at": 1.0, "parent": "base", "metrics": {"kl": 0.1, "distinct2": 0.7}}, name)


@pytest.mark.parametrize("name", ["../etc", "a/b", "..", ".", "", "a b", "x\\y", ".tmp-123", "é"])
def test_bad_names_refused(name):
    """Names with path parts or odd characters are refused."""
    with pytest.raises(InvalidAdapterName):
        validate_name(name)


def test_commit_list_use_rollback(store):
    """Versions get increasing names; use and rollback move the active pointer."""
    a, b = fake_adapter(store), fake_adapter(store)
    assert (a, b) == ("v0001", "v0002")
    assert store.current() == BASE
    store.set_current(a)
    store.set_current(b)
    assert [i.name for i in store.list() if i.active] == [b]
    assert store.previous() == a
    assert store.rollback() == a
    assert store.current() == a
    assert store.rollback() == BASE
    with pytest.raises(NothingToRollBack):
        store.rollback()


def test_active_choice_survives_restart(tmp_path):
    """A new store over the same folder sees the same active adapter."""
    store = AdapterStore(tmp_path / "ad")
    name = fake_adapter(store)
    store.set_current(name)
    assert AdapterStore(tmp_path / "ad").current() == name


def test_missing_adapter_refused_active_unchanged(store):
    name = fake_adapter(store)
    store.set_current(name)
    with pytest.raises(AdapterNotFound):
        store.set_current("v0099")
    assert store.current() == name


def test_corrupt_weights_refused(store):
    """A truncated safetensors file is detected before anything switches."""
    name = fake_adapter(store)
    weights = store.root / name / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4])
    with pytest.raises(CorruptAdapter):
        store.set_current(name)
    assert store.current() == BASE


def test_pickle_weights_refused(store):
    """An adapter folder carrying .bin weights is refused: only safetensors load."""
    name = fake_adapter(store)
    (store.root / name / "adapter_model.bin").write_bytes(b"pickle")
    with pytest.raises(CorruptAdapter, match="safetensors"):
        store.path(name)


def test_temp_folders_are_not_versions(store):
    """An interrupted write (temp folder) never shows up as a version."""
    store.new_temp_dir()
    assert [i.name for i in store.list()] == [BASE]


def test_metadata_shown(store):
    name = fake_adapter(store)
    info = store.info(name)
    assert info.parent == "base" and info.metrics["kl"] == 0.1 and info.meta["name"] == name


def test_listing_is_cached_until_a_version_or_the_pointer_changes(store, monkeypatch):
    """Autocomplete lists at every keystroke: the meta files are read again only after a change."""
    from tests.support.adapters import fake_adapter

    fake_adapter(store.root, "v0001")
    first = [i.name for i in store.list()]
    reads = []
    real = store._meta
    monkeypatch.setattr(store, "_meta", lambda name: reads.append(name) or real(name))
    assert [i.name for i in store.list()] == first and reads == []
    fake_adapter(store.root, "v0002")
    assert [i.name for i in store.list()] == ["base", "v0001", "v0002"] and reads
    reads.clear()
    store.set_current("v0002")
    assert next(i for i in store.list() if i.active).name == "v0002"


def test_an_old_meta_with_promoted_reads_as_accepted(store):
    """meta.json once wrote the gate's verdict as "promoted"; it reads as "accepted" (what the word means now)."""
    name = fake_adapter(store)
    path = store.root / name / "meta.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "promoted": False}))
    meta = store.info(name).meta
    assert meta["accepted"] is False and "promoted" not in meta
