"""KILROY_LOG_FORMAT=json: one JSON object per line with time, level, logger, message and the ids passed."""

from __future__ import annotations

import json
import logging

from bot.logs import json_formatter


def test_json_lines_carry_the_fields_and_ids():
    record = logging.LogRecord("bot.cogs.posting", logging.WARNING, __file__, 1, "posted %s", ("x",), None)
    record.channel = 2000
    record.post = 17
    line = json_formatter().format(record)
    data = json.loads(line)
    assert data["level"] == "WARNING" and data["logger"] == "bot.cogs.posting" and data["message"] == "posted x"
    assert data["channel"] == 2000 and data["post"] == 17 and "T" in data["time"] and "\n" not in line


def test_exceptions_stay_on_one_line():
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = logging.LogRecord("bot", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = json_formatter().format(record)
    assert "\n" not in line and "ValueError: boom" in json.loads(line)["exc_info"]
