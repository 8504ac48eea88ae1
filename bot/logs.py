"""Logging set-up for every entry point: one handler on stderr, the chatty libraries quietened."""

from __future__ import annotations

import logging
import os
import sys
import warnings


def setup_logging(level: str) -> None:
    """Log to stderr once; quiet the chatty libraries."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    # bitsandbytes warns about an optional 'kernels' package on CPU-only machines; harmless (DESIGN.md)
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", message=".*kernels.*")
    if "transformers" in sys.modules:  # imported before us (benchmarks, tests): the env vars came too late
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
