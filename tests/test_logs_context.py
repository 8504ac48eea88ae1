"""The ids at hand (guild, channel, post, run) reach every JSON log line through the log context (bot/logs.py)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import Iterator

import pytest

from bot.adapters.store import AdapterStore
from bot.logs import CONTEXT_KEYS, ContextFilter, bind_log_context, log_context, make_handler
from bot.training.nightly import run_training


def context_now() -> dict[str, object]:
    """The ids a line logged now would carry (through the handler's real filter)."""
    record = logging.LogRecord("probe", logging.INFO, __file__, 0, "probe", None, None)
    ContextFilter().filter(record)
    return {k: v for k, v in vars(record).items() if k in CONTEXT_KEYS}


@pytest.fixture
def capture() -> Iterator[callable]:
    """Attach the real handler (json or text) to the root logger; return a reader of the lines it wrote."""
    root = logging.getLogger()
    added: list[tuple[logging.Handler, io.StringIO]] = []
    old_level = root.level
    root.setLevel(logging.INFO)

    def attach(fmt: str) -> callable:
        stream = io.StringIO()
        handler = make_handler(fmt, stream)
        root.addHandler(handler)
        added.append((handler, stream))
        return lambda: [line for line in stream.getvalue().splitlines() if line]

    yield attach
    for handler, _ in added:
        root.removeHandler(handler)
    root.setLevel(old_level)


def test_context_ids_land_in_json_lines_and_nest(capture):
    lines = capture("json")
    log = logging.getLogger("bot.somewhere")
    with log_context(guild=1, channel=2):
        with log_context(post=3, channel=None):  # None leaves the outer value
            log.info("inner")
        log.info("outer")
    log.info("outside")
    inner, outer, outside = (json.loads(line) for line in lines())
    assert (inner["guild"], inner["channel"], inner["post"], inner["message"]) == (1, 2, 3, "inner")
    assert (outer["guild"], outer["channel"]) == (1, 2) and "post" not in outer
    assert not {"guild", "channel", "post"} & set(outside)


def test_an_explicit_extra_wins_over_the_context(capture):
    lines = capture("json")
    with log_context(channel=2):
        logging.getLogger("bot").warning("x", extra={"channel": 9})
    assert json.loads(lines()[0])["channel"] == 9


def test_member_ids_and_unknown_keys_are_refused():
    with pytest.raises(TypeError, match="member"), log_context(member=5):
        pass
    with pytest.raises(TypeError):
        bind_log_context(token="secret")
    assert context_now() == {}


async def test_tasks_do_not_see_each_others_ids(capture):
    lines = capture("json")
    log = logging.getLogger("bot.x")

    async def event(channel: int) -> None:
        bind_log_context(channel=channel)
        await asyncio.sleep(0)
        log.info("event %d", channel)

    await asyncio.gather(event(1), event(2))
    log.info("after")
    got = {json.loads(line)["message"]: json.loads(line).get("channel") for line in lines()}
    assert got == {"event 1": 1, "event 2": 2, "after": None}


def test_text_format_is_unchanged_by_the_context(capture):
    lines = capture("text")
    with log_context(guild=1, channel=2, post=3, run=4):
        logging.getLogger("cogs.posting").info("posted %d", 3)
    assert re.fullmatch(r"\d\d:\d\d:\d\d INFO    cogs\.posting: posted 3", lines()[0])


async def test_a_training_runs_lines_carry_its_run_id(capture, make_settings, storage, tmp_path):
    """run_training binds the run id for its own lines only: the caller's context is unchanged afterwards."""
    lines = capture("json")
    settings = make_settings()
    with log_context(command="retrain"):
        result = await run_training(settings, storage, AdapterStore(tmp_path / "adapters"), now=0.0, reason="test")
        assert context_now() == {"command": "retrain"}
    assert result.status == "skipped" and result.run_id is not None
    line = next(json.loads(x) for x in lines() if "skipped" in x)
    assert line["run"] == result.run_id and line["command"] == "retrain" and line["logger"] == "bot.training.nightly"


async def test_the_workers_log_lines_are_relayed_and_a_failure_names_the_run(capture, capsys, make_settings, storage):
    """Trainings run in a worker process: its lines (with their run id) reach our stderr, and the parent's own
    line about the failure names the run the worker had started."""
    import sys

    from bot.training.runner import TrainingFailed, TrainingRunner

    lines = capture("json")
    fake = (
        "import json, sys\n"
        "print(json.dumps({'event': 'start', 'run_id': 41}), flush=True)\n"
        "sys.stderr.write(json.dumps({'message': 'worker says hi', 'run': 41}) + '\\n')\n"
        "sys.stderr.write('x' * 70000 + '\\n')\n"  # past the stream's line limit: dropped, nothing else lost
        "sys.stderr.write('Traceback: boom\\n')\n"
        "sys.exit(3)\n"
    )
    settings = make_settings()
    store = AdapterStore(settings.adapters_dir)
    runner = TrainingRunner(settings, storage, store, command=[sys.executable, "-c", fake])
    with pytest.raises(TrainingFailed, match="boom"):
        await runner.run("test")
    relayed = capsys.readouterr().err.splitlines()
    assert json.loads(relayed[0]) == {"message": "worker says hi", "run": 41} and relayed[-1] == "Traceback: boom"
    failure = next(json.loads(x) for x in lines() if "training worker failed" in x)
    assert failure["run"] == 41 and failure["level"] == "ERROR"
