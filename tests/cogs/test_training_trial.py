"""The scheduled nightly training waits while an A/B trial is deciding; a trial outcome reads as such."""

from cogs.training import Training, summary_text
from tests.cogs.test_training import FakeRunner
from tests.support.discord_mocks import fake_bot


class FakeTrials:
    def __init__(self, running):
        self._running = running

    async def running(self):
        return self._running


async def test_nightly_never_waits_for_a_guard(make_settings):
    """KILROY_AB_MODE=guard (the default): a running guard does not hold the nightly training back."""
    guarded = Training(
        fake_bot(), settings=make_settings(), runner=FakeRunner(), trials=FakeTrials(running=type("T", (), {"id": 3})())
    )
    assert await guarded.run_nightly() is not None and guarded.runner.calls == ["nightly"]


async def test_nightly_waits_during_a_superiority_trial(make_settings):
    """KILROY_AB_MODE=trial: with a trial running, the nightly run does not train; without one it does."""
    settings = make_settings(KILROY_AB_MODE="trial")
    busy = Training(
        fake_bot(), settings=settings, runner=FakeRunner(), trials=FakeTrials(running=type("T", (), {"id": 3})())
    )
    assert await busy.run_nightly() is None and busy.runner.calls == []
    idle = Training(fake_bot(), settings=settings, runner=FakeRunner(), trials=FakeTrials(running=None))
    assert await idle.run_nightly() is not None and idle.runner.calls == ["nightly"]


def test_trial_outcome_summary():
    """A run whose candidate went on trial reads as such (the announcements are wired in bot/services.py)."""
    from bot.domain.records import RunResult

    text = summary_text(RunResult("done", 1, "v0002", accepted=True, trial=True, reason="gate passed"))
    assert "A/B trial" in text and "v0002" in text


async def test_a_database_error_reading_the_trial_does_not_stop_the_nightly_loop(make_settings):
    """An exception escaping run_nightly would end the discord.py loop for good: no training on any later night."""

    class BrokenTrials(FakeTrials):
        async def running(self):
            raise RuntimeError("database is locked")

    cog = Training(fake_bot(), settings=make_settings(), runner=FakeRunner(), trials=BrokenTrials(running=None))
    assert await cog.run_nightly() is None and cog.runner.calls == []
