"""Composing a scheduled post: sample, refuse empty or blocklisted text, retry a few times."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.engine.generator import Generator, Sample

log = logging.getLogger(__name__)


def is_postable(text: str, blocklist: Sequence[str]) -> bool:
    """A post must have visible text and no blocklisted word (case-insensitive, whole words or phrases)."""
    if not text.strip():
        return False
    lowered = text.lower()
    return not any(re.search(rf"(?<!\w){re.escape(word)}(?!\w)", lowered) for word in blocklist)


async def compose_post(
    generator: Generator, *, prompt: str, blocklist: Sequence[str], tries: int = 3, adapter: str | None = None
) -> Sample | None:
    """A postable sample (written by `adapter`, default the serving one), or None after `tries` batches without one."""
    for attempt in range(tries):
        for sample in await generator.generate(2, prompt=prompt, adapter=adapter):
            if is_postable(sample.text, blocklist):
                return sample
        log.info("no postable sample (attempt %d of %d)", attempt + 1, tries)
    return None
