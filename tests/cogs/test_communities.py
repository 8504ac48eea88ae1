"""Issue 24: /adapter and /retrain are scoped to the server where they run; each server is served by its own
lineage (else the commons'); a forget-me reaches every server."""

from types import SimpleNamespace
from unittest.mock import AsyncMock

import pytest

from bot.adapters.lineages import Lineages
from bot.adapters.store import AdapterError
from bot.domain.community import COMMONS
from bot.domain.records import NewPost
from bot.engine.generator import Generator, SamplingParams
from bot.engine.model import load_base
from bot.privacy.service import PrivacyService
from bot.services import Communities
from bot.training.lock import TrainingBusy
from cogs.adapters import Adapters
from cogs.training import Training
from tests.support.adapters import make_adapter
from tests.support.discord_mocks import fake_bot, interaction, member, texts

pytestmark = pytest.mark.slow


@pytest.fixture
async def world(tiny_settings, storage):
    """Two servers (1 and 2) with two versions each, and the commons with one; nothing serves yet."""
    settings = tiny_settings(KILROY_OPERATOR_USER_IDS="7")
    loaded = load_base(settings.model, settings.data_dir, device="cpu")
    lineages = Lineages(settings.adapters_dir)
    for seed, community in enumerate(("g1", "g1", "g2", "g2", COMMONS)):
        make_adapter(loaded, lineages.store(community), seed)
    generator = Generator(loaded, SamplingParams(max_new_tokens=8))
    communities = Communities(settings, storage, lineages, generator)
    cog = Adapters(settings=settings, adapters=communities.serving(COMMONS), communities=communities)
    yield cog, communities, lineages, generator
    await generator.close()


async def test_use_in_one_server_does_not_change_what_another_is_served(world):
    cog, communities, lineages, _ = world
    assert lineages.serving("g1") == lineages.serving("g2") == "base"
    await communities.serving(COMMONS).use("v0001")
    assert lineages.serving("g1") == lineages.serving("g2") == "commons/v0001"  # no own adapter yet: the commons
    await cog.use.callback(cog, interaction(member(7), guild_id=1), "v0002")
    assert lineages.serving("g1") == "g1/v0002"
    assert lineages.serving("g2") == "commons/v0001"  # untouched
    i = interaction(member(7), guild_id=2)
    await cog.use.callback(cog, i, "g2/v0001")  # a reference of its own lineage works too
    assert lineages.serving("g2") == "g2/v0001" and lineages.serving("g1") == "g1/v0002"
    # the posting seam: each server's reference, resident, and what the generator records on the sample
    for community, expected in (("g1", "g1/v0002"), ("g2", "g2/v0001")):
        reference = await communities.reference(community)
        (sample,) = await communities.generator.generate(1, adapter=reference)
        assert reference == expected and sample.adapter == expected
    assert communities.generator.active == "commons/v0001"  # the default (story mode, shell) stays the commons


async def test_another_servers_adapter_is_refused_and_list_is_scoped(world):
    cog, _communities, lineages, _ = world
    with pytest.raises(AdapterError, match="another lineage"):
        await cog.use.callback(cog, interaction(member(7), guild_id=1), "g2/v0001")
    assert lineages.serving("g1") == "base"
    await cog.use.callback(cog, interaction(member(7), guild_id=1), "v0001")
    i = interaction(member(7), guild_id=1)
    await cog.list_.callback(cog, i)
    shown = texts(i.response.send_message)[-1] if texts(i.response.send_message) else texts(i.followup.send)[-1]
    assert "`g1` is served by `g1/v0001`" in shown and "▶ `v0001`" in shown and "`v0002`" in shown


async def test_rollback_is_per_server(world):
    cog, _communities, lineages, _ = world
    for name in ("v0001", "v0002"):
        await cog.use.callback(cog, interaction(member(7), guild_id=1), name)
    await cog.use.callback(cog, interaction(member(7), guild_id=2), "v0002")
    await cog.rollback.callback(cog, interaction(member(7), guild_id=1))
    assert lineages.serving("g1") == "g1/v0001" and lineages.serving("g2") == "g2/v0002"


async def test_a_new_server_is_served_by_the_commons_until_its_own_adapter_is_promoted(world):
    _cog, communities, lineages, _ = world
    await communities.serving(COMMONS).use("v0001")
    assert await communities.reference("g9") == "commons/v0001"  # from its first post
    store = lineages.store("g9")
    make_adapter(communities.generator.loaded, store, 11)
    # its own run's promotion: the lineage's promoter swaps and moves its pointer last
    run_id = await communities.storage.start_run("nightly", at=1.0, community="g9")
    await communities.storage.commit_run(run_id, adapter="v0001", accepted=True, message="ok", metrics={}, post_ids=[])
    result = await communities.runner("g9").promoter.apply(run_id)
    # A/B guard on (the default): it serves at once, guarded against what served the server before, the commons
    assert result.trial and await communities.reference("g9") == "g9/v0001"
    trial = await communities.trials("g9").running()
    assert (trial.community, trial.candidate, trial.incumbent) == ("g9", "g9/v0001", "commons/v0001")
    assert await communities.trials("g1").running() is None  # trials are per server
    assert lineages.serving("g1") == "commons/v0001"  # the others still on the commons
    await communities.trials("g9").stop("test")  # rolled back to the anchor: the commons serves it again
    assert lineages.serving("g9") == "commons/v0001" and lineages.store("g9").current() == "base"


async def test_retrain_trains_the_server_it_runs_in_and_says_its_place_in_the_queue(make_settings):
    ran = []

    class Runner:
        def __init__(self, community, busy=False):
            self.community, self.busy = community, busy

        async def run(self, reason, on_progress=None, **_):
            ran.append((self.community, reason))
            from bot.domain.records import RunResult

            return RunResult("skipped", 1, reason="only 0 settled untrained posts")

    busy = {"value": False}
    night = SimpleNamespace(place=lambda c: {"g1": 2}.get(c))
    communities = SimpleNamespace(runner=lambda c: Runner(c, busy["value"]), night=night)
    settings = make_settings()
    cog = Training(fake_bot(), settings=settings, runner=Runner(COMMONS), communities=communities)
    await cog.retrain.callback(cog, interaction(member(2, manage_guild=True), guild_id=1))
    assert ran == [("g1", "/retrain")]
    busy["value"] = True
    with pytest.raises(TrainingBusy, match="number 2"):
        await cog.retrain.callback(cog, interaction(member(2, manage_guild=True), guild_id=1))
    with pytest.raises(TrainingBusy, match="not in tonight's queue"):
        await cog.retrain.callback(cog, interaction(member(2, manage_guild=True), guild_id=5))
    assert ran == [("g1", "/retrain")]


async def test_nightly_reports_each_server_in_its_own_log_channel(make_settings):
    from bot.domain.records import RunResult
    from bot.training.night import NightResult

    settings = make_settings(KILROY_LOG_CHANNEL_IDS="11,22", KILROY_LOG_CHANNEL_ID="99")
    channels = {
        cid: SimpleNamespace(id=cid, guild=SimpleNamespace(id=guild), send=AsyncMock())
        for cid, guild in ((11, 1), (22, 2), (99, 3))
    }
    bot = fake_bot()
    bot.get_channel = lambda cid: channels.get(cid)

    async def run_night(reason, on_result=None):
        outcomes = [
            NightResult("g2", result=RunResult("skipped", 1, reason="nothing new")),
            NightResult("g1", error="boom"),
            NightResult("g4", skipped="the night's training budget ran out"),
        ]
        for o in outcomes:
            await on_result(o)
        return outcomes

    communities = SimpleNamespace(run_night=run_night)
    cog = Training(bot, settings=settings, runner=None, communities=communities)
    await cog.run_nightly()
    said = {cid: [c.args[0] for c in ch.send.call_args_list] for cid, ch in channels.items()}
    assert said[22] == ["Nightly training: Nothing to train: nothing new."]
    assert "failed" in said[11][0]
    assert "waits for the next night" in said[99][0]  # server 4 has no log channel of its own: the operator's


async def test_forget_me_removes_the_member_from_every_server(storage, tmp_path):
    lineages = Lineages(tmp_path / "adapters")
    for guild in (1, 2):
        mid = 100 + guild
        await storage.add_post(
            NewPost(
                channel_id=guild, guild_id=guild, text="t", adapter=f"g{guild}/v0001", created_at=1.0, message_id=mid
            )
        )
        await storage.add_vote(mid, 4242, "❤️", at=1.0)
        await storage.add_vote(mid, 5, "❤️", at=1.0)
        store = lineages.store(f"g{guild}")
        (store.root / "v0001").mkdir()
        (store.root / "v0001" / "meta.json").write_text('{"by": 4242}')
    privacy = PrivacyService(storage, retention_days=90, adapter_store=lineages)
    await privacy.forget(4242)
    for guild in (1, 2):
        records = await storage.post_records(guild_id=guild)
        assert [v.member_id for r in records for v in r.votes] == [5]
        assert "4242" not in (lineages.store(f"g{guild}").root / "v0001" / "meta.json").read_text()
