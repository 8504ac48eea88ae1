"""The resident-adapter bookkeeping: least recently used out, never a pinned, kept or in-flight one."""

import pytest

from bot.engine.resident import ResidentSet


def test_least_recently_used_goes_first():
    r = ResidentSet(2)
    for name in ("a", "b"):
        r.add(name)
    r.touch("a")  # b is now the least recently used
    r.add("c")
    assert r.victims() == ["b"] and r.names == ["a", "c"]


def test_pins_by_key_keep_and_release_independently():
    """Each trial pins under its own key: one trial ending does not unpin another's arms. Pins count toward the
    bound: past it, every unpinned adapter goes."""
    r = ResidentSet(1)
    for name in ("g1/v1", "g1/v2", "g2/v1", "g2/v2", "x"):
        r.add(name)
    r.pin({"g1/v1", "g1/v2"}, key="g1")
    r.pin({"g2/v1", "g2/v2"}, key="g2")
    assert r.victims() == ["x"]
    r.pin(set(), key="g1")
    assert r.pinned == {"g2/v1", "g2/v2"} and r.pins("g1") == set()
    assert r.victims() == ["g1/v1", "g1/v2"]
    assert set(r.names) == {"g2/v1", "g2/v2"}


def test_in_flight_and_kept_names_stay_over_the_bound():
    r = ResidentSet(1)
    for name in ("a", "b", "c"):
        r.add(name)
    r.in_flight = frozenset({"a", "b"})
    assert r.victims(keep={"c"}) == []  # a batch needing three adapters holds them all ...
    r.in_flight = frozenset()
    assert r.victims(keep={"c"}) == ["a", "b"]  # ... then the cache shrinks back, least recently used first
    assert r.names == ["c"]


def test_capacity_is_at_least_one():
    with pytest.raises(ValueError):
        ResidentSet(0)
