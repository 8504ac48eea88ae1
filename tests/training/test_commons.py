import pytest

from bot.adapters.lineages import Lineages
from bot.domain.community import COMMONS
from bot.storage import NewPost
from bot.training.nightly import run_training
from bot.training.runner import TrainingRunner
from tests.support.data import DAY, OPEN_GATE

pytestmark = pytest.mark.slow


async def _servers(settings, storage, guilds=(1, 2), per=8):
    """Real samples of the tiny model, posted `per` in each server, voted on."""
    from bot.engine.generator import Generator, SamplingParams
    from bot.engine.model import load_base

    g = Generator(load_base(settings.model, settings.data_dir, device="cpu"), SamplingParams(max_new_tokens=24))
    try:
        samples = await g.generate(per * len(guilds), seed=1)
    finally:
        await g.close()
    for i, s in enumerate(samples):
        guild = guilds[i // per]
        await storage.add_post(
            NewPost.from_sample(s, channel_id=guild * 10, created_at=float(i), message_id=i + 1, guild_id=guild)
        )
        for member in range(1 + i % 3):
            await storage.add_vote(i + 1, 100 + member, "❤️", at=float(i))


async def test_the_commons_trains_on_the_servers_that_pool_and_leaves_their_posts_to_them(tiny_settings, storage):
    settings = tiny_settings(KILROY_EPOCHS="1", KILROY_COMMONS="opt-out", KILROY_COMMUNITY_MIN_POSTS="8", **OPEN_GATE)
    lineages = Lineages(settings.adapters_dir)
    await _servers(settings, storage, guilds=(1, 2, 3))
    await storage.set_commons_choice(3, "out", at=0.0)  # server 3's admin left the commons
    result = await TrainingRunner(settings, storage, lineages.store(COMMONS), in_process=True, community=COMMONS).run(
        "test", now=DAY
    )
    assert result.promoted and lineages.current(COMMONS) == "commons/v0001"
    assert lineages.store(COMMONS).info("v0001").meta["data"]["posts"] == 16  # servers 1 and 2, not 3
    assert len(await storage.post_records(untrained_only=True)) == 24  # every server's posts stay fresh for it

    again = await run_training(settings, storage, lineages.store(COMMONS), now=DAY + 1, community=COMMONS)
    assert again.status == "skipped"  # nothing new since its last run: pooled posts are not trained twice

    # server 1's first adapter starts from the commons, and trains on its own posts
    own = await TrainingRunner(
        settings,
        storage,
        lineages.store("g1"),
        in_process=True,
        community="g1",
        parent=lambda: lineages.current(COMMONS),
    ).run("test", now=DAY)
    info = lineages.store("g1").info("v0001")
    assert own.promoted and info.parent == "commons/v0001" and info.meta["data"]["posts"] == 8


async def test_a_server_does_not_train_its_own_lineage_before_it_has_its_posts(tiny_settings, storage):
    settings = tiny_settings(KILROY_COMMUNITY_MIN_POSTS="9", **OPEN_GATE)
    lineages = Lineages(settings.adapters_dir)
    await _servers(settings, storage, guilds=(1,))
    result = await run_training(settings, storage, lineages.store("g1"), now=DAY, community="g1")
    assert result.status == "skipped" and "served by the commons" in result.reason and "8 settled" in result.reason
    assert len(await storage.post_records(untrained_only=True)) == 8
    off = tiny_settings(KILROY_COMMUNITY_MIN_POSTS="9", KILROY_COMMONS="off", KILROY_EPOCHS="1", **OPEN_GATE)
    assert (await run_training(off, storage, lineages.store("g1"), now=DAY, community="g1")).status == "done"
