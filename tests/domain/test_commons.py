import pytest

from bot.domain.commons import commons_batch, parent, pooled_guilds, pools, serving, trains_own
from bot.domain.community import COMMONS
from bot.domain.records import Post, PostRecord


def test_who_pools_follows_the_bot_wide_default_unless_the_admin_chose():
    assert pools("opt-out", None) and not pools("opt-in", None) and not pools("off", None)
    assert not pools("opt-out", "out") and pools("opt-in", "in")
    assert not pools("off", "in")  # off means no commons at all: a server cannot turn it on
    assert pooled_guilds("opt-in", [1, 2, 3], {2: "in", 3: "out"}) == {2}
    assert pooled_guilds("opt-out", [1, 2, 3], {2: "in", 3: "out"}) == {1, 2}
    with pytest.raises(ValueError, match="KILROY_COMMONS"):
        pools("sometimes", None)


def test_a_quiet_server_is_served_by_the_commons_until_it_has_posts_and_its_own_adapter():
    def serve(own, settled, mode="opt-out", commons="commons/v0003"):
        return serving("g1", own=own, commons=commons, settled=settled, min_posts=100, mode=mode)

    assert serve("base", 0) == "commons/v0003"  # a new server: the commons from its first post
    assert serve("g1/v0001", 99) == "commons/v0003"  # an adapter of its own, but too few posts yet
    assert serve("base", 500) == "commons/v0003"  # posts enough, but its own gate has not passed yet
    assert serve("g1/v0001", 100) == "g1/v0001"  # both: its own adapter
    assert serve("g1/v0001", None) == "g1/v0001"  # not counted yet: what it served before the commons
    assert serve("base", 0, commons="base") == "base"
    assert serve("g1/v0001", 5, mode="off") == "g1/v0001" and serve("base", 5, mode="off") == "base"
    assert serving(COMMONS, own="commons/v0003", commons="commons/v0003", settled=0, min_posts=100, mode="opt-in") == (
        "commons/v0003"
    )


def test_a_first_adapter_starts_from_the_commons():
    assert parent("base", "commons/v0002", "opt-out") == "commons/v0002"
    assert parent("g1/v0004", "commons/v0002", "opt-in") == "g1/v0004"
    assert parent("base", "commons/v0002", "off") == "base"
    assert not trains_own(63, 64) and trains_own(64, 64)


def _record(pid, guild, at, trained=False):
    post = Post(
        id=pid,
        message_id=pid,
        channel_id=1,
        guild_id=guild,
        kind="post",
        text="t",
        prompt="",
        prompt_ids=(),
        completion_ids=(),
        adapter="base",
        params={},
        created_at=at,
        trained_at=at + 1 if trained else None,
    )
    return PostRecord(post=post, votes=[], replies=[])


def test_the_commons_trains_on_pooled_servers_since_its_last_run_and_claims_only_its_own_posts():
    records = [
        _record(1, None, 10.0),  # outside any server, untrained: the commons' own
        _record(2, None, 11.0, trained=True),  # trained already
        _record(3, 7, 5.0),  # a pooled server's post from before the last commons run
        _record(4, 7, 20.0, trained=True),  # pooled, newer; trained by its own lineage: still the commons' too
        _record(5, 8, 21.0),  # a server that does not pool
    ]
    window, batch, claim = commons_batch(records, {7}, since=12.0)
    assert [r.post.id for r in window] == [1, 2, 3, 4]
    assert [r.post.id for r in batch] == [1, 4]
    assert claim == [1]  # a server's posts stay fresh for its own lineage
    _, batch, _ = commons_batch(records, {7, 8}, since=None)
    assert [r.post.id for r in batch] == [1, 3, 4, 5]
