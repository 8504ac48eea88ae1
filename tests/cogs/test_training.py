import asyncio

import pytest

from bot.adapters.serving import AdapterService
from bot.adapters.store import AdapterStore
from bot.app.checks import NotAllowed
from bot.domain.records import RunResult
from bot.engine.generator import Generator, SamplingParams
from bot.engine.model import load_base
from bot.training.result import Progress
from bot.training.runner import TrainingBusy, TrainingRunner
from cogs.training import Training, progress_text
from tests.support.data import seed_posts
from tests.support.discord_mocks import fake_bot, interaction, member, texts


class FakeRunner:
    """Stands in for the worker process: emits progress, returns an outcome."""

    def __init__(self):
        self.calls = []
        self._busy = False

    @property
    def busy(self):
        return self._busy

    async def run(self, reason, on_progress=None):
        self.calls.append(reason)
        for step in (1, 2, 3):
            if on_progress:
                await on_progress(Progress("progress", stage="train", step=step, of=3, loss=0.5))
        return RunResult(
            "done",
            7,
            "v0007",
            accepted=True,
            promoted=True,
            reason="gate passed",
            metrics={"loss": 0.1, "kl": 0.2, "distinct2": 0.7},
        )


@pytest.fixture
def cog(make_settings):
    settings = make_settings(KILROY_MODERATOR_ROLE_IDS="55")
    return Training(fake_bot(), settings=settings, runner=FakeRunner(), clock=iter(range(0, 100, 2)).__next__)


async def test_retrain_refused_for_plain_member(cog):
    i = interaction(member(1))
    with pytest.raises(NotAllowed):
        await cog.retrain.callback(cog, i)
    assert cog.runner.calls == [] and not i.response.defer.called


@pytest.mark.parametrize("user", [member(2, manage_guild=True), member(3, roles=(55,))])
async def test_retrain_accepted_for_moderator(cog, user):
    """A moderator's /retrain defers, shows progress, and ends with the outcome."""
    i = interaction(user)
    await cog.retrain.callback(cog, i)
    assert i.response.defer.called and len(cog.runner.calls) == 1
    edits = texts(i.edit_original_response)
    assert any("training" in e and "/3" in e for e in edits)
    assert "v0007" in edits[-1] and "promoted and now serving" in edits[-1]


async def test_second_retrain_refused_politely(cog):
    cog.runner._busy = True
    with pytest.raises(TrainingBusy, match="already in progress"):
        await cog.retrain.callback(cog, interaction(member(2, manage_guild=True)))


def test_progress_text_bar():
    assert "10/20" in progress_text(Progress("progress", stage="train", step=10, of=20, loss=0.1))


@pytest.mark.slow
async def test_nightly_callback_trains_gates_and_swaps(tiny_settings, storage, tmp_path):
    """The nightly task's callback runs the real worker process, and the promoted adapter starts serving."""
    env = {
        "KILROY_EPOCHS": "1",
        "KILROY_GATE_MAX_KL": "100",
        "KILROY_GATE_MIN_DIVERSITY": "0",
        "KILROY_GATE_MIN_BASE_DIVERSITY": "0",
        "KILROY_GATE_MAX_REPEAT": "100",
        "KILROY_GATE_MAX_LENGTH": "100",
        "KILROY_GATE_MIN_ENGAGEMENT": "-100",
        "KILROY_REWARD_MAX_P": "1",
        "KILROY_GATE_SAMPLES": "8",
        "KILROY_MAX_NEW_TOKENS": "24",
        "KILROY_SETTLE_HOURS": "0",
    }
    settings = tiny_settings(**env, KILROY_DB_PATH=str(tmp_path / "kilroy.db"))
    await seed_posts(settings, storage)
    generator = Generator(load_base(settings.model, settings.data_dir, device="cpu"), SamplingParams(max_new_tokens=8))
    service = AdapterService(AdapterStore(settings.adapters_dir), generator)
    runner = TrainingRunner(settings, storage, AdapterStore(settings.adapters_dir), swap=service.activate)
    cog = Training(fake_bot(), settings=settings, runner=runner)
    try:
        outcome = await asyncio.wait_for(cog.run_nightly(), timeout=180)
    finally:
        await generator.close()
    assert outcome is not None and outcome.promoted
    assert generator.active == outcome.adapter == "v0001"
    assert AdapterStore(settings.adapters_dir).current() == "v0001"


async def test_worker_failure_keeps_serving(make_settings, storage):
    """A worker that crashes is reported; nothing is swapped."""
    swapped = []

    async def swap(name):
        swapped.append(name)

    settings = make_settings()
    runner = TrainingRunner(
        settings,
        storage,
        AdapterStore(settings.adapters_dir),
        swap=swap,
        command=["python3", "-c", 'import sys; print(\'{"event": "error", "message": "boom"}\'); sys.exit(1)'],
    )
    from bot.training.runner import TrainingFailed

    with pytest.raises(TrainingFailed, match="boom"):
        await runner.run("test")
    assert swapped == []


async def test_retrain_longer_than_the_interaction_reports_in_the_channel(cog):
    """The interaction token lasts 15 minutes; a longer run still tells the moderator how it ended."""
    from unittest.mock import AsyncMock, MagicMock

    import discord

    i = interaction(member(2, manage_guild=True))
    expired = discord.NotFound(MagicMock(status=404, reason="Unknown Webhook"), "Unknown Webhook")
    i.edit_original_response = AsyncMock(side_effect=expired)
    i.channel = MagicMock(spec=discord.TextChannel)
    i.channel.send = AsyncMock()
    await cog.retrain.callback(cog, i)
    (call,) = i.channel.send.call_args_list
    assert "v0007" in call.args[0] and call.kwargs["allowed_mentions"].everyone is False
