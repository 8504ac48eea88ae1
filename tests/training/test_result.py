"""Progress events cross the worker's stdout as JSON lines through one codec, and come back as they were."""

from __future__ import annotations

import json

from bot.domain.records import RunResult
from bot.training.result import Progress


def roundtrip(event: Progress) -> Progress:
    """What the runner reads back from the line the worker writes."""
    return Progress.from_json(json.loads(json.dumps(event.to_json(), default=str)))


def test_every_kind_of_event_survives_the_process_boundary():
    events = [
        Progress("settings", settings={"training": {"kl_beta": 0.5}}),
        Progress("start", run_id=3, posts=40, parent="v0002"),
        Progress("progress", stage="train", step=2, of=5, epoch=0, loss=0.25),
        Progress("progress", stage="evaluate", step=5, of=5),
        Progress("skipped", reason="only 3 settled untrained posts"),
        Progress("error", message="RuntimeError: boom"),
    ]
    assert [roundtrip(e) for e in events] == events


def test_the_done_event_carries_the_run_result_in_its_own_codec():
    """`done` is the RunResult's fields beside "event" (what `kilroy train --json` prints too)."""
    result = RunResult("done", 4, "v0004", "v0003", accepted=True, promoted=False, reason="ok", metrics={"kl": 0.1})
    line = Progress("done", result=result).to_json()
    assert line == result.as_event() and line["event"] == "done" and line["accepted"] is True
    assert roundtrip(Progress("done", result=result)) == Progress("done", result=result)


def test_fields_an_event_does_not_carry_stay_off_the_line():
    assert Progress("progress", stage="train", step=1, of=2).to_json() == {
        "event": "progress",
        "stage": "train",
        "step": 1,
        "of": 2,
    }
