import pytest

from bot.adapters.lineages import Lineages, default_policy
from bot.domain.community import (
    COMMONS,
    InvalidCommunity,
    community_id,
    guild_of,
    is_community,
    parse_ref,
    ref,
)
from tests.adapters.test_store import fake_adapter


def test_community_ids_and_references():
    assert community_id(123) == "g123" and guild_of("g123") == 123 and guild_of(COMMONS) is None
    assert ref("g123", "v0004") == "g123/v0004" and ref("g1", "base") == "base"
    assert parse_ref("commons/v0002") == ("commons", "v0002") and parse_ref("base") == (None, "base")
    for bad in ("v0004", "g123/", "x/v0001", "g123/a/b", "g0/v0001", "../v0001"):
        with pytest.raises(ValueError):
            parse_ref(bad)
    assert not is_community("g-1") and not is_community("G1") and is_community(COMMONS)
    with pytest.raises(InvalidCommunity):
        community_id(0)


def test_each_community_has_its_own_pointer_and_history(tmp_path):
    lineages = Lineages(tmp_path / "adapters")
    a, b = lineages.store("g1"), lineages.store("g2")
    a1, a2 = fake_adapter(a), fake_adapter(a)
    b1 = fake_adapter(b)
    assert (a1, a2, b1) == ("v0001", "v0002", "v0001")  # versions are numbered per lineage
    a.set_current(a1)
    a.set_current(a2)
    b.set_current(b1)
    assert lineages.current("g1") == "g1/v0002" and lineages.current("g2") == "g2/v0001"
    assert a.rollback() == a1 and lineages.current("g2") == "g2/v0001"  # a rollback in one leaves the other
    assert lineages.path("g2/v0001") == tmp_path / "adapters" / "g2" / "v0001"
    assert lineages.exists("g1/v0002") and not lineages.exists("g2/v0002") and lineages.exists("base")
    assert lineages.communities() == ["g1", "g2"]
    assert lineages.reward_model_path("g2") == tmp_path / "adapters" / "g2" / "reward_model.json"


def test_a_new_community_is_served_by_the_commons_until_its_own_pointer_moves(tmp_path):
    lineages = Lineages(tmp_path / "adapters")
    assert lineages.serving("g9") == "base"  # nothing anywhere: the base model
    commons = lineages.store(COMMONS)
    commons.set_current(fake_adapter(commons))
    assert lineages.serving("g9") == "commons/v0001"  # from its first post
    assert not (tmp_path / "adapters" / "g9").exists()  # asking creates no folder
    own = lineages.store("g9")
    own.set_current(fake_adapter(own))  # its own gate passed: promotion moved its own pointer
    assert lineages.serving("g9") == "g9/v0001"
    assert lineages.serving(COMMONS) == "commons/v0001"
    assert default_policy("g8", lineages) == "commons/v0001"


def test_a_policy_decides_which_lineage_serves(tmp_path):
    lineages = Lineages(tmp_path / "adapters", policy=lambda community, _l: "base")
    commons = lineages.store(COMMONS)
    commons.set_current(fake_adapter(commons))
    assert lineages.serving("g1") == "base"


def test_scrub_reaches_every_lineage(tmp_path):
    lineages = Lineages(tmp_path / "adapters")
    for c in ("g1", "g2"):
        s = lineages.store(c)
        name = fake_adapter(s)
        meta = s.root / name / "meta.json"
        meta.write_text(meta.read_text().replace('"parent"', '"by": "member 4242", "parent"'))
    assert lineages.scrub("4242", "forgotten") == 2
