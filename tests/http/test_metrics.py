"""Metric hooks: commands by outcome, generation histograms, the loop-lag watcher; names all prefixed kilroy_."""

from __future__ import annotations

import asyncio
import re

from discord import app_commands

from bot.app.bot import command_outcome
from bot.app.errors import user_message
from bot.http.metrics import Metrics, Snapshot, watch_loop_lag


def names(text: str) -> set[str]:
    return {m.group(1) for m in re.finditer(r"^# TYPE (\S+)", text, flags=re.M)}


def test_every_family_is_prefixed():
    text = Metrics().render().decode()
    assert names(text) and all(n.startswith("kilroy_") for n in names(text))


def test_failed_commands_are_told_apart():
    assert command_outcome(app_commands.CheckFailure("no")) == "refused"
    assert command_outcome(RuntimeError("bug")) == "error"


def test_a_user_error_is_counted_as_such():
    from bot.adapters.store import NothingToRollBack

    assert user_message(NothingToRollBack()) is not None
    assert command_outcome(NothingToRollBack()) == "user_error"


async def test_snapshot_failure_keeps_the_last_values():
    m = Metrics()

    async def good():
        return Snapshot(posts={(1, "base", "post"): 3})

    async def bad():
        raise OSError("disk gone")

    await m.refresh(good)
    await m.refresh(bad)
    assert 'kilroy_posts_total{adapter="base",channel="1",kind="post"} 3.0' in m.render().decode()


async def test_loop_lag_is_observed():
    m = Metrics()
    task = asyncio.create_task(watch_loop_lag(m, interval=0.01))
    await asyncio.sleep(0.05)
    import time

    time.sleep(0.06)  # noqa: ASYNC251 - block the loop on purpose
    await asyncio.sleep(0.03)
    task.cancel()
    assert m.lag_max >= 0.04
    assert "kilroy_event_loop_lag_seconds_count" in m.render().decode()


async def test_snapshot_source_reads_totals_the_running_trial_and_the_filter(storage):
    """A scrape's snapshot: the database's totals, a running trial's arms and decision (none once it ended), the
    output filter's refusals."""
    from types import SimpleNamespace

    from bot.domain.safety import OutputFilter
    from bot.http.metrics import snapshot_source

    arms = {"candidate": 3, "incumbent": 4}
    status = SimpleNamespace(trial=SimpleNamespace(active=True), posts=arms, decision=SimpleNamespace(verdict=None))

    async def trial_status():
        return status

    output_filter = OutputFilter()
    output_filter.resampled["blocklist"] += 2
    output_filter.skipped = 1
    snapshot = await snapshot_source(storage, trial_status=trial_status, output_filter=output_filter)()
    assert snapshot.trial == {"arms": {"candidate": 3, "incumbent": 4}, "decision": "undecided"}
    assert snapshot.refused == {"blocklist": 2} and snapshot.skipped == 1 and snapshot.replies == 0
    status.trial.active = False
    assert (await snapshot_source(storage, trial_status=trial_status, output_filter=output_filter)()).trial is None
