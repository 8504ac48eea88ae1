"""Logging set-up for every entry point: one handler on stderr, the chatty libraries quietened.

`KILROY_LOG_FORMAT=json` writes one JSON object per line (python-json-logger): time, level, logger, message, and
the ids at hand when a call passes them as `extra=` (guild, channel, post, run, adapter), for log shippers.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings


def json_formatter() -> logging.Formatter:
    """One JSON object per line: time (ISO 8601), level, logger, message, any `extra=` ids, and exc_info."""
    from pythonjsonlogger.json import JsonFormatter

    return JsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        datefmt="%Y-%m-%dT%H:%M:%S%z",
        json_ensure_ascii=False,
    )


def setup_logging(level: str, fmt: str = "text") -> None:
    """Log to stderr once (`fmt`: text or json); quiet the chatty libraries."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(json_formatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=[handler])
    # bitsandbytes warns about an optional 'kernels' package on CPU-only machines; harmless (DESIGN.md)
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
