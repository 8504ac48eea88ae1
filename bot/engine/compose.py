"""Composing a scheduled post: sample, pass every text through the output filter, resample a bounded number of
times, then skip."""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

from bot.domain.safety import OutputFilter

if TYPE_CHECKING:
    from bot.engine.generator import Generator, Sample

log = logging.getLogger(__name__)


async def compose_post(
    generator: Generator, *, prompt: str, output_filter: OutputFilter, tries: int = 3, adapter: str | None = None
) -> Sample | None:
    """A sample (written by `adapter`, default the serving one) that passed the filter (its text neutralised), or None
    after `tries` batches without one."""
    for attempt in range(tries):
        for sample in await generator.generate(2, prompt=prompt, adapter=adapter):
            verdict = output_filter.check_generated(sample.text)
            if verdict.ok:
                return dataclasses.replace(sample, text=verdict.text)
        log.info("no postable sample (attempt %d of %d)", attempt + 1, tries)
    output_filter.gave_up()
    log.warning("skipped a post: the output filter refused %d batches of samples", tries)
    return None
