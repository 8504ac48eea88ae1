"""Logging set-up for every entry point: one handler on stderr, the chatty libraries quietened.

`KILROY_LOG_FORMAT=json` writes one JSON object per line (python-json-logger): time, level, logger, message, and
the ids at hand, for log shippers. The ids come from the *log context*: the code that knows them (a posting round,
a reaction, a command, a training run) wraps its work in `log_context(guild=..., channel=..., post=...)`, and a
filter on the handler copies them into every record logged inside, from any module, without each call passing
`extra=`. The context is a `contextvars.ContextVar`: it follows the asyncio task that set it (and threads started
with `asyncio.to_thread` or the model thread, which copy it), and never leaks into another task. Only the keys in
`CONTEXT_KEYS` are accepted: never a member id, never a token. The text format does not show them.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from typing import IO

CONTEXT_KEYS = frozenset({"guild", "channel", "post", "message_id", "command", "run", "adapter"})
"""The ids a log line may carry. Deliberately no member/user id (privacy) and nothing secret."""

_EMPTY: dict[str, object] = {}  # never mutated: every change sets a new dict
_context: contextvars.ContextVar[dict[str, object]] = contextvars.ContextVar("kilroy_log_context", default=_EMPTY)


def _merged(ids: dict[str, object]) -> dict[str, object]:
    unknown = set(ids) - CONTEXT_KEYS
    if unknown:
        raise TypeError(f"not a log context key: {sorted(unknown)} (allowed: {sorted(CONTEXT_KEYS)})")
    return {**_context.get(), **{k: v for k, v in ids.items() if v is not None}}


@contextlib.contextmanager
def log_context(**ids: object) -> Iterator[None]:
    """Every record logged inside carries these ids (None values are left out); nests, restoring on exit."""
    token = _context.set(_merged(ids))
    try:
        yield
    finally:
        _context.reset(token)


def bind_log_context(**ids: object) -> None:
    """Add ids to the current context until the current task ends (for hooks with no block to wrap, such as a
    command tree's check that runs in the task that then runs the command)."""
    _context.set(_merged(ids))


class ContextFilter(logging.Filter):
    """Copies the log context's ids into each record; an id passed with `extra=` wins."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


def json_formatter() -> logging.Formatter:
    """One JSON object per line: time (ISO 8601), level, logger, message, the ids at hand, and exc_info."""
    from pythonjsonlogger.json import JsonFormatter

    return JsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        datefmt="%Y-%m-%dT%H:%M:%S%z",
        json_ensure_ascii=False,
    )


def text_formatter() -> logging.Formatter:
    """The human format: time, level, logger, message (the context's ids are not shown)."""
    return logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")


def make_handler(fmt: str = "text", stream: IO[str] | None = None) -> logging.Handler:
    """The one handler: `fmt` text or json, the log context's ids copied into every record."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(json_formatter() if fmt == "json" else text_formatter())
    handler.addFilter(ContextFilter())
    return handler


def setup_logging(level: str, fmt: str = "text") -> None:
    """Log to stderr once (`fmt`: text or json); quiet the chatty libraries."""
    handler = make_handler(fmt)
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=[handler])
    # bitsandbytes warns about an optional 'kernels' package on CPU-only machines; harmless
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if not sys.stderr.isatty():  # on a terminal a first model download shows its progress; in a log, no bars
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", message=".*kernels.*")
    if "transformers" in sys.modules:  # imported before us (benchmarks, tests): the env vars came too late
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
