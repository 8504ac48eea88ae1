"""TrialService on a real database with a fake model: arms, verdicts acted on, replacement, restore."""

from __future__ import annotations

from dataclasses import dataclass

from bot.adapters.store import BASE, AdapterNotFound
from bot.storage import NewPost
from bot.trials.sequential import assign_arm
from bot.trials.service import TrialService


@dataclass
class FakeSample:
    text: str = "hello"


class FakeGenerator:
    def __init__(self):
        self.resident, self.pinned = {BASE}, set()

    def is_resident(self, name):
        return name in self.resident

    async def preload(self, name, path, *, pin=True):
        self.resident.add(name)

    def pin(self, names):
        self.pinned = set(names)

    async def generate(self, n, *, adapter=None, **kw):
        assert adapter in self.resident
        return [FakeSample()] * n


class FakeStore:
    def __init__(self, names):
        self.names, self.pointer = set(names), BASE

    def current(self):
        return self.pointer

    def path(self, name):
        if name not in self.names:
            raise AdapterNotFound(name)
        return name


class FakeAdapters:
    def __init__(self, store):
        self.store, self.used = store, []

    @property
    def active(self):
        return self.store.pointer

    async def use(self, name):
        self.used.append(name)
        self.store.pointer = name

    def ref(self, name):  # one flat store: references are the names
        return name

    def version(self, reference):
        return reference


def _service(storage, make_settings, names=("v1", "v2"), **env):
    # the superiority trial unless a test asks for the guard
    settings = make_settings(KILROY_SETTLE_HOURS="0", KILROY_AB_ALPHA="0.2", **{"KILROY_AB_MODE": "trial", **env})
    store = FakeStore(names)
    said = []

    async def announce(text):
        said.append(text)

    svc = TrialService(storage, FakeAdapters(store), FakeGenerator(), settings, clock=lambda: 1e6, announce=announce)
    return svc, said


async def _post(storage, svc, i, votes):
    choice = await svc.choose()
    pid = await storage.add_post(
        svc.tag(
            NewPost(channel_id=1, text="t", adapter=choice.adapter, created_at=1000.0 + i, message_id=i + 1), choice
        )
    )
    for m in range(votes(choice.arm)):
        await storage.add_vote(i + 1, 500 + m, "❤️", at=1000.0 + i)
    return choice, pid


async def test_worse_candidate_is_kept_out_and_announced(storage, make_settings):
    """Arms follow the stored coin; a candidate nobody reacts to loses, the incumbent stays, the run is 'kept'."""
    svc, said = _service(storage, make_settings)
    run_id = await storage.start_run("nightly", at=1.0)
    assert await svc.on_candidate("v1", run_id)
    trial = await storage.active_trial()
    assert trial.incumbent == BASE and svc.generator.pinned == {BASE, "v1"} and "started" in said[0]
    status = None
    for i in range(400):
        choice, _ = await _post(storage, svc, i, lambda arm: 4 if arm == "incumbent" else 0)
        assert choice.arm == assign_arm(trial.seed, i, trial.share)
        if i % 10 == 9 and (status := await svc.check()).trial.verdict:
            break
    assert status.trial.verdict == "keep" and svc.adapters.used == [] and svc.adapters.store.current() == BASE
    assert "ended" in said[-1] and (await storage.get_run(run_id)).stage == "kept"
    assert await svc.choose() is None and svc.generator.pinned == set()


async def test_better_candidate_is_promoted_through_the_adapter_service(storage, make_settings):
    """A candidate members prefer is promoted through AdapterService.use (load, check, swap, pointer last)."""
    svc, _ = _service(storage, make_settings)
    await svc.start("v1")
    for i in range(400):
        await _post(storage, svc, i, lambda arm: 4 if arm == "candidate" else 0)
        if i % 10 == 9 and (await svc.check()).trial.verdict:
            break
    assert svc.adapters.used == ["v1"] and svc.adapters.store.current() == "v1"


async def test_a_new_candidate_replaces_an_undecided_trial(storage, make_settings):
    """/retrain during a trial: its gate-passing candidate replaces the undecided trial."""
    svc, _ = _service(storage, make_settings)
    first = await svc.start("v1")
    assert (await svc.start("v1")).id == first.id  # the same candidate again: the same trial
    second = await svc.start("v2")
    assert second.id != first.id and (await storage.get_trial(first.id)).verdict == "replaced"


async def test_restore_ends_a_trial_whose_candidate_vanished(storage, make_settings):
    """At start, a trial whose candidate can no longer load ends, keeping the incumbent."""
    svc, _ = _service(storage, make_settings)
    await svc.start("v1")
    svc.adapters.store.names.discard("v1")
    svc.generator.resident.discard("v1")
    assert await svc.restore() is None
    (trial,) = await storage.trials()
    assert trial.verdict == "stopped" and trial.decided_by == "restore"


async def test_trials_off_declines(storage, make_settings):
    """KILROY_AB_SHARE=0: no trial; the promotion sequence swaps the candidate in as before."""
    svc, _ = _service(storage, make_settings, KILROY_AB_SHARE="0")
    assert not await svc.on_candidate("v1") and await storage.active_trial() is None


async def test_guard_serves_a_gate_passing_candidate_at_once_and_rolls_back_a_worse_one(storage, make_settings):
    """KILROY_AB_MODE=guard: the candidate serves at once (training never waits for it); when the live posts show
    it worse than the anchor, the anchor serves again and the run ends 'kept'."""
    svc, said = _service(storage, make_settings, KILROY_AB_MODE="guard")
    run_id = await storage.start_run("nightly", at=1.0)
    assert await svc.on_candidate("v1", run_id)
    trial = await storage.active_trial()
    assert svc.adapters.store.current() == "v1" and trial.candidate == "v1" and trial.incumbent == BASE
    assert "guard" in said[0]
    for i in range(400):
        await _post(storage, svc, i, lambda arm: 4 if arm == "incumbent" else 0)
        if i % 10 == 9 and (status := await svc.check()).trial.verdict:
            break
    assert status.trial.verdict == "keep" and svc.adapters.store.current() == BASE
    assert svc.adapters.used == ["v1", BASE] and (await storage.get_run(run_id)).stage == "kept"
    assert "rolled back" in said[-1]


async def test_a_guard_starts_over_settled_posts_with_their_baselines_frozen(storage, make_settings):
    """Regression: a guard's start handed storage (median, spread) tuples where it reads Baseline fields, so on any
    server with settled posts every gate-passing candidate failed to serve ('tuple' object has no attribute
    'median'); tests started guards on empty databases only."""
    for i in range(6):
        await storage.add_post(NewPost(channel_id=1, text="t", adapter=BASE, created_at=10.0 + i, message_id=900 + i))
        await storage.add_vote(900 + i, 500, "❤️", at=10.0 + i)
    svc, _ = _service(storage, make_settings, KILROY_AB_MODE="guard")
    assert await svc.on_candidate("v1", await storage.start_run("nightly", at=1.0))
    trial = await storage.active_trial()
    assert svc.adapters.store.current() == "v1" and trial.candidate == "v1" and 1 in trial.baselines


async def test_guard_hands_its_candidate_arm_to_the_next_candidate_and_keeps_the_anchor(storage, make_settings):
    """A newer gate-passing candidate serves at once and takes over the running guard (same trial, same anchor,
    evidence kept); the superseded run is done. No harm within the budget ends with the newest serving."""
    svc, said = _service(storage, make_settings, KILROY_AB_MODE="guard", KILROY_AB_MAX_POSTS="40")
    first_run, second_run = await storage.start_run("nightly", at=1.0), await storage.start_run("nightly", at=2.0)
    await svc.on_candidate("v1", first_run)
    first = await storage.active_trial()
    for i in range(6):
        await _post(storage, svc, i, lambda arm: 1)
    await svc.on_candidate("v2", second_run)
    moved = await storage.active_trial()
    assert moved.id == first.id and moved.candidate == "v2" and moved.incumbent == BASE and moved.run_id == second_run
    assert svc.adapters.store.current() == "v2" and (await storage.get_run(first_run)).stage == "promoted"
    assert "takes over" in said[-1]
    arms = [(await _post(storage, svc, i, lambda arm: 1))[0] for i in range(6, 60)]
    assert {c.adapter for c in arms} == {"v2", BASE}
    status = await svc.check()
    assert status.trial.verdict == "futile" and svc.adapters.store.current() == "v2"
    assert (await storage.get_run(second_run)).stage == "promoted"


async def test_an_operator_stop_rolls_a_guard_back(storage, make_settings):
    """Stopping a guard by hand returns to the anchor."""
    svc, _ = _service(storage, make_settings, KILROY_AB_MODE="guard")
    await svc.on_candidate("v1")
    await svc.stop("user:1")
    assert svc.adapters.store.current() == BASE and await storage.active_trial() is None
