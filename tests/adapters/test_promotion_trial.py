"""A gate-passing candidate goes on an A/B trial instead of being swapped in; the sequence stays crash-safe."""

from __future__ import annotations

from bot.adapters.promotion import Promoter
from bot.adapters.store import BASE, AdapterStore
from bot.storage import Storage
from tests.adapters.test_promotion import Live, committed_run


class Trials:
    """Stands in for TrialService.on_candidate."""

    def __init__(self, enabled: bool = True, fail: bool = False) -> None:
        self.enabled, self.fail, self.started = enabled, fail, []

    async def on_candidate(self, name: str, run_id: int) -> bool:
        if self.fail:
            raise RuntimeError("candidate failed its health check")
        if self.enabled:
            self.started.append((name, run_id))
        return self.enabled


async def test_candidate_goes_on_trial_not_served(tmp_path):
    """Trials on: the posts are marked, the trial starts, nothing is swapped and the pointer stays."""
    store = AdapterStore(tmp_path / "adapters")
    async with Storage.open(tmp_path / "k.db") as storage:
        run_id, name, _ = await committed_run(storage, store)
        live, trials = Live(), Trials()
        result = await Promoter(storage, store, swap=live.swap, trial=trials.on_candidate).apply(run_id)
        assert result.trial and not result.promoted and result.accepted
        assert trials.started == [(name, run_id)] and live.active == BASE and store.current() == BASE
        (run,) = await storage.runs()
        assert run.stage == "trial" and await storage.post_records(untrained_only=True) == []
        # a restart does not walk a run on trial any further
        assert await Promoter(storage, store, swap=live.swap, trial=trials.on_candidate).reconcile() == []
        assert len(trials.started) == 1


async def test_trials_off_swaps_as_before(tmp_path):
    """KILROY_AB_SHARE=0: the hook declines and the candidate is swapped in, pointer last."""
    store = AdapterStore(tmp_path / "adapters")
    async with Storage.open(tmp_path / "k.db") as storage:
        run_id, name, _ = await committed_run(storage, store)
        live = Live()
        result = await Promoter(storage, store, swap=live.swap, trial=Trials(enabled=False).on_candidate).apply(run_id)
        assert result.promoted and not result.trial and live.active == store.current() == name


async def test_a_candidate_that_cannot_go_on_trial_is_refused(tmp_path):
    """If the trial cannot start (the candidate will not load or generate), it is refused; base keeps serving."""
    store = AdapterStore(tmp_path / "adapters")
    async with Storage.open(tmp_path / "k.db") as storage:
        run_id, _, _ = await committed_run(storage, store)
        live = Live()
        result = await Promoter(storage, store, swap=live.swap, trial=Trials(fail=True).on_candidate).apply(run_id)
        assert not result.promoted and "health check" in result.reason and store.current() == BASE
        (run,) = await storage.runs()
        assert run.stage == "refused"


async def test_shell_training_defers_the_trial_to_the_bot(tmp_path):
    """`kilroy train` (no live model, trials on) stops at 'marked'; the bot's start-up reconcile starts the trial."""
    store = AdapterStore(tmp_path / "adapters")
    async with Storage.open(tmp_path / "k.db") as storage:
        run_id, name, _ = await committed_run(storage, store)
        result = await Promoter(storage, store, defer_to_trial=True).apply(run_id)
        assert result.accepted and not result.promoted and "trial starts with the bot" in result.reason
        assert store.current() == BASE and (await storage.runs())[0].stage == "marked"
        trials = Trials()
        await Promoter(storage, store, swap=Live().swap, trial=trials.on_candidate).reconcile()
        assert trials.started == [(name, run_id)] and (await storage.runs())[0].stage == "trial"
