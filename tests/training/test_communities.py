"""Issue 24: a night for many communities, and one community's training on its own posts."""

import json

import pytest

from bot.adapters.lineages import Lineages
from bot.domain.community import COMMONS
from bot.domain.records import NewPost, RunResult
from bot.training.night import Night
from bot.training.runner import TrainingRunner
from tests.support.adapters import make_adapter
from tests.support.data import DAY, OPEN_GATE, seed_posts


async def _posts(storage, guild, n, *, at=1.0, start=0):
    for i in range(n):
        await storage.add_post(
            NewPost(
                channel_id=guild,
                guild_id=guild,
                text="t",
                adapter="base",
                created_at=at,
                message_id=guild * 1000 + start + i,
            )
        )


BACKUPS: list = []


class FakeRunner:
    def __init__(self, community, log, clock, night):
        self.community, self.log, self.clock, self.night = community, log, clock, night

    async def run(self, reason, on_progress=None, *, now=None, backup=None):
        self.log.append((self.community, reason, self.night().place(self.community), self.night().place("g3")))
        BACKUPS.append(backup)
        self.clock["t"] += 40.0  # each training takes 40 s
        if self.community == "g1":
            raise RuntimeError("boom")
        return RunResult("done", 1, "v0001", accepted=True, promoted=True)


async def test_a_night_takes_the_stalest_first_and_stops_at_its_budget(make_settings, storage):
    settings = make_settings(
        KILROY_MIN_TRAIN_POSTS="2", KILROY_TRAIN_BUDGET_MINUTES="1", KILROY_SETTLE_HOURS="0", KILROY_COMMONS="off"
    )
    await _posts(storage, 1, 4)
    await _posts(storage, 2, 6)
    await _posts(storage, 3, 3)
    await _posts(storage, 4, 1)  # below KILROY_MIN_TRAIN_POSTS: nothing to learn from yet
    await _posts(storage, 5, 9, at=DAY * 10)  # not settled yet
    log, clock = [], {"t": 0.0}
    night: Night | None = None
    night = Night(
        lambda c: FakeRunner(c, log, clock, lambda: night), storage, settings, clock=lambda: clock["t"], now=lambda: DAY
    )
    assert await night.order() == ["g2", "g1", "g3"]
    results = await night.run("nightly")
    # one at a time, stalest first; g3 waited while the others trained (its place moved up), then did not fit
    assert [(c, p, p3) for c, _r, p, p3 in log] == [("g2", 0, 2), ("g1", 0, 1)]
    assert [(r.community, r.result is not None, r.error, r.skipped) for r in results] == [
        ("g2", True, None, None),
        ("g1", False, "RuntimeError: boom", None),  # a failure is reported; the night goes on
        ("g3", False, None, "the night's training budget ran out"),
    ]
    assert night.place("g3") is None and night.queue == []
    assert BACKUPS[-2:] == [True, False]  # the nightly backup once, before the first training


async def test_a_night_skips_a_community_whose_trial_decides(make_settings, storage):
    settings = make_settings(KILROY_MIN_TRAIN_POSTS="1", KILROY_SETTLE_HOURS="0", KILROY_COMMONS="off")
    await _posts(storage, 1, 2)
    await _posts(storage, 2, 1)
    log, clock = [], {"t": 0.0}
    night: Night | None = None

    async def skip(community):
        return "its A/B trial #4 is still deciding" if community == "g1" else None

    night = Night(lambda c: FakeRunner(c, log, clock, lambda: night), storage, settings, now=lambda: DAY, skip=skip)
    results = await night.run("nightly")
    assert [c for c, *_ in log] == ["g2"]
    assert results[0].skipped == "its A/B trial #4 is still deciding"


@pytest.mark.slow
async def test_a_communitys_first_adapter_trains_on_its_own_posts_from_the_commons(tiny_settings, storage):
    settings = tiny_settings(KILROY_EPOCHS="1", KILROY_MIN_TRAIN_POSTS="4", **OPEN_GATE)
    lineages = Lineages(settings.adapters_dir)
    commons = lineages.store(COMMONS)
    commons.set_current(make_adapter_for(settings, commons))
    await seed_posts(settings, storage)  # 16 posts; half become server 1's, half server 2's
    await storage.db.execute("UPDATE posts SET guild_id = CASE WHEN id % 2 = 0 THEN 1 ELSE 2 END")
    runner = TrainingRunner(
        settings,
        storage,
        lineages.store("g1"),
        in_process=True,
        community="g1",
        parent=lambda: lineages.serving("g1"),
    )
    result = await runner.run("/retrain", now=DAY)
    assert result.status == "done" and result.promoted and result.adapter == "v0001"
    assert lineages.serving("g1") == "g1/v0001" and lineages.serving("g2") == "commons/v0001"
    meta = lineages.store("g1").info("v0001").meta
    assert meta["parent"] == "commons/v0001" and meta["data"]["posts"] == 8
    (run,) = await storage.runs(community="g1")
    assert run.stage == "promoted"
    assert {r.post.guild_id for r in await storage.post_records(untrained_only=True)} == {2}  # server 2's wait
    saved = json.loads(lineages.reward_model_path("g1").read_text())  # its own reward model
    assert saved["posts"] <= 8
    assert not lineages.reward_model_path("g2").exists()


def make_adapter_for(settings, store):
    from bot.engine.model import load_base

    return make_adapter(load_base(settings.model, settings.data_dir, device="cpu"), store, 3)


async def test_a_night_waits_for_a_retrain_that_slipped_in_between(make_settings, storage):
    from bot.training.lock import TrainingBusy

    settings = make_settings(KILROY_MIN_TRAIN_POSTS="1", KILROY_SETTLE_HOURS="0", KILROY_COMMONS="off")
    await _posts(storage, 1, 2)
    await _posts(storage, 2, 1)
    busy = {"left": 2}
    ran = []

    class Busy:
        def __init__(self, community):
            self.community = community

        async def run(self, reason, on_progress=None, *, now=None, backup=None):
            if self.community == "g2" and busy["left"]:
                busy["left"] -= 1
                raise TrainingBusy("/retrain")
            ran.append(self.community)
            return RunResult("done", 1, "v0001")

    night = Night(Busy, storage, settings, now=lambda: DAY)
    waits = []

    async def sleep(seconds):
        waits.append(seconds)

    night.sleep = sleep
    results = await night.run("nightly")
    assert ran == ["g1", "g2"] and len(waits) == 2 and all(r.result for r in results)


async def test_with_the_commons_on_a_night_trains_the_commons_first(make_settings, storage):
    """KILROY_COMMONS not off: the commons trains first, so the servers' first adapters start from tonight's commons;
    with the commons off it is never queued."""
    await _posts(storage, 1, 4)
    await _posts(storage, 2, 6)
    on = Night(
        lambda c: None, storage, make_settings(KILROY_MIN_TRAIN_POSTS="2", KILROY_SETTLE_HOURS="0"), now=lambda: DAY
    )
    assert await on.order() == ["commons", "g2", "g1"]
    off = make_settings(KILROY_MIN_TRAIN_POSTS="2", KILROY_SETTLE_HOURS="0", KILROY_COMMONS="off")
    assert await Night(lambda c: None, storage, off, now=lambda: DAY).order() == ["g2", "g1"]
