from bot.adapters.commons import CommonsPolicy, commons_policy
from bot.adapters.lineages import Lineages
from bot.domain.community import COMMONS
from bot.storage import NewPost
from tests.adapters.test_store import fake_adapter

HOUR = 3600.0


async def _posts(storage, guild, n, at=0.0, first=1):
    for i in range(n):
        await storage.add_post(
            NewPost(
                channel_id=guild * 10, text="x", adapter="base", created_at=at, message_id=first + i, guild_id=guild
            )
        )


async def test_a_new_server_is_served_by_the_commons_and_switches_after_its_posts_and_its_gate(tmp_path, storage):
    policy = CommonsPolicy(mode="opt-out", min_posts=3)
    lineages = Lineages(tmp_path / "adapters", policy=policy)
    commons = lineages.store(COMMONS)
    commons.set_current(fake_adapter(commons))
    await policy.refresh(storage, now=100 * HOUR, settle_hours=12)
    assert lineages.serving("g5") == "commons/v0001"  # no posts at all: served by the commons from its first post
    assert policy.parent("g5", lineages) == "commons/v0001"  # its first adapter starts from the commons

    own = lineages.store("g5")
    own.set_current(fake_adapter(own))  # its own gate passed...
    await _posts(storage, 5, 2, at=0.0)
    await _posts(storage, 5, 5, at=99 * HOUR, first=100)  # ...but these are not settled yet
    await policy.refresh(storage, now=100 * HOUR, settle_hours=12)
    assert lineages.serving("g5") == "commons/v0001"  # 2 settled posts < 3
    assert policy.parent("g5", lineages) == "g5/v0001"  # its own lineage goes on from its own pointer

    await policy.refresh(storage, now=112 * HOUR, settle_hours=12)
    assert policy.settled == {5: 7}
    assert lineages.serving("g5") == "g5/v0001"
    assert lineages.serving("g6") == "commons/v0001"  # another server is unaffected


async def test_before_counting_and_with_the_commons_off_a_server_keeps_its_own_pointer(tmp_path):
    lineages = Lineages(tmp_path / "adapters", policy=CommonsPolicy(mode="opt-out", min_posts=10**6))
    commons, own = lineages.store(COMMONS), lineages.store("g5")
    commons.set_current(fake_adapter(commons))
    own.set_current(fake_adapter(own))
    assert lineages.serving("g5") == "g5/v0001"  # not counted yet: what served before the commons
    off = CommonsPolicy(mode="off", min_posts=10**6, settled={})
    assert off("g5", lineages) == "g5/v0001" and off("g6", lineages) == "base"
    assert off.parent("g6", lineages) == "base"


async def test_an_admin_choice_is_stored_per_server_and_can_be_forgotten(storage):
    assert await storage.commons_choices() == {}
    await storage.set_commons_choice(1, "out", at=1.0)
    await storage.set_commons_choice(2, "in", at=1.0)
    await storage.set_commons_choice(1, "in", at=2.0)  # changed its mind
    assert await storage.commons_choices() == {1: "in", 2: "in"}
    await storage.set_commons_choice(2, None, at=3.0)
    assert await storage.commons_choices() == {1: "in"}


def test_the_settings_choose_the_policy(make_settings):
    policy = commons_policy(make_settings(KILROY_COMMONS="opt-in", KILROY_COMMUNITY_MIN_POSTS="12"))
    assert (policy.mode, policy.min_posts, policy.counted) == ("opt-in", 12, False)
