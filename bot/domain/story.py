"""Pure story-mode logic: the exquisite-corpse buffer, cut to fit the model's context, and answer parsing.

The prompt is always: the instruction, the opening, as many of the most recent director lines as fit, and the
cue `machine_director:`. The instruction is never cut; the opening is shortened (from its end) only when even
the instruction, the opening and the cue alone would not fit.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

INSTRUCTION = "Continue the story in a surprising and interesting way."
HUMAN = "human_director"
MACHINE = "machine_director"
CUE = f"{MACHINE}:"

# a speaker prefix the model may invent at the start of its line ("machine_director: ...", "Narrator: ...")
_PREFIX = re.compile(
    r"^\s*(?:[a-z]+_director|director|narrator|machine|human|ai|bot|assistant|kilroy)\s*:\s*", re.IGNORECASE
)


class StoryTooLong(ValueError):
    """The context cannot even hold the instruction and the cue."""


@dataclass
class StoryBuffer:
    """Instruction + opening + director lines."""

    opening: str
    lines: list[tuple[str, str]] = field(default_factory=list)
    instruction: str = INSTRUCTION

    def add(self, speaker: str, text: str) -> None:
        """Append one director line."""
        if speaker not in (HUMAN, MACHINE):
            raise ValueError(f"unknown speaker {speaker!r}")
        self.lines.append((speaker, _one_line(text)))

    def transcript(self) -> str:
        """The whole story as text, for `/story show`."""
        return "\n".join([self.instruction, self.opening, *(f"{s}: {t}" for s, t in self.lines)])

    def render(self, count_tokens: Callable[[str], int], max_tokens: int) -> str:
        """The prompt for the machine's next line, at most `max_tokens` tokens, ending with the cue."""
        head = self.instruction + "\n"
        if count_tokens(head + CUE) > max_tokens:
            raise StoryTooLong(f"a context of {max_tokens} tokens cannot hold the instruction")
        opening = _one_line(self.opening)
        # shorten the opening word by word only if instruction + opening + cue alone overflow
        words = opening.split()
        while words and count_tokens(head + " ".join(words) + "\n" + CUE) > max_tokens:
            words.pop()
        head += (" ".join(words) + "\n") if words else ""
        # newest lines first, while they fit; then restore story order. Each line is counted once (GPT-2's
        # pre-tokenizer splits at newlines, so the parts' counts add up): linear in the story's length, where
        # re-counting the whole prompt for every kept line grew with its square.
        budget = max_tokens - count_tokens(head + CUE)
        kept: list[str] = []
        for speaker, text in reversed(self.lines):
            line = f"{speaker}: {text}\n"
            cost = count_tokens(line)
            if cost > budget:
                break
            budget -= cost
            kept.append(line)
        prompt = head + "".join(reversed(kept)) + CUE
        while kept and count_tokens(prompt) > max_tokens:  # a tokenizer that merges across lines: drop the oldest
            kept.pop()
            prompt = head + "".join(reversed(kept)) + CUE
        return prompt


def parse_answer(generated: str) -> str:
    """The machine's line: the first non-empty line, trimmed, without any speaker prefix it invented."""
    for raw in generated.splitlines() or [generated]:
        text = raw.strip()
        while _PREFIX.match(text):
            text = _PREFIX.sub("", text, count=1).strip()
        if text:
            return text
    return ""


def _one_line(text: str) -> str:
    # a director line is one line: newlines would forge extra speaker turns in the prompt
    return " ".join(text.split())


def buffer_from_lines(opening: str, lines: Sequence[tuple[str, str]], instruction: str = INSTRUCTION) -> StoryBuffer:
    """Rebuild a buffer from stored lines."""
    buf = StoryBuffer(opening=opening, instruction=instruction)
    for speaker, text in lines:
        buf.add(speaker, text)
    return buf
