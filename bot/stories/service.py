"""Story mode as a service: one active story per channel, persisted; used by `/story` and `kilroy story`."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.config.settings import StorySettings
from bot.domain.safety import OutputFilter, member_text_problem, normalise
from bot.domain.story import HUMAN, INSTRUCTION, buffer_from_lines, parse_answer
from bot.storage import NewPost, Storage, Story

if TYPE_CHECKING:
    from bot.engine.generator import Generator, Sample

log = logging.getLogger(__name__)

MAX_OPENING_CHARS = 1000


class StoryError(Exception):
    """A story request that cannot be served; the message is fit for the member."""


class NoStory(StoryError):
    def __init__(self) -> None:
        super().__init__("no story is running here; start one with /story start")


class StoryEndedMeanwhile(StoryError):
    def __init__(self) -> None:
        super().__init__("the story ended while Kilroy was answering; nothing was added")


@dataclass(frozen=True)
class Turn:
    """A human line and the machine director's answer; `post_id` is the answer's post once recorded."""

    story_id: int
    channel_id: int
    human_text: str
    member_id: int | None
    text: str
    sample: Sample
    post_id: int | None = None


Send = Callable[[Turn], Awaitable[int | None]]
"""Posts a turn's answer where the members see it; returns the message id (None where there is none)."""


class StoryService:
    """Starts, continues, shows and ends stories."""

    def __init__(
        self,
        storage: Storage,
        generator: Generator,
        settings: StorySettings,
        *,
        clock: Callable[[], float] = time.time,
        output_filter: OutputFilter | None = None,
    ) -> None:
        self.storage = storage
        self.generator = generator
        self.settings = settings
        self.clock = clock
        self.output_filter = output_filter or OutputFilter()
        # per-member cooldowns are taken by the bot's command tree before any await (bot/app/checks.py)
        # one turn at a time per channel, from generation through recording; `end` waits for it too
        self._locks: weakref.WeakValueDictionary[int, asyncio.Lock] = weakref.WeakValueDictionary()

    def _lock(self, channel_id: int) -> asyncio.Lock:
        lock = self._locks.get(channel_id)
        if lock is None:
            lock = self._locks[channel_id] = asyncio.Lock()
        return lock

    def answering(self, channel_id: int) -> bool:
        """A line is being answered here (or `end` is running): the next turn or `end` will wait for it."""
        lock = self._locks.get(channel_id)
        return lock is not None and lock.locked()

    async def start(
        self,
        channel_id: int,
        *,
        opening: str | None = None,
        member_id: int | None = None,
        guild_id: int | None = None,
    ) -> Story:
        """Start a story here; raises StoryError if one is running, or the opening is too long or filtered."""
        from bot.storage import StoryExists

        if opening is not None and len(opening) > MAX_OPENING_CHARS:
            raise StoryError(f"the opening is too long: keep it under {MAX_OPENING_CHARS} characters")
        custom = bool(opening and opening.strip())
        if custom:
            # checked as it will be stored and echoed: normalised first (`kill  yourself` is `kill yourself`)
            opening = self._normalised(opening or "", what="opening")
            self._check_member(member_id, opening, what="opening")
        elif member_id is not None and self.storage.is_opted_out(member_id):
            member_id = None  # they may start a story with the default opening; nothing records who did
        opening = normalise(opening if custom and opening else self.settings.opening, one_line=True)
        try:
            await self.storage.start_story(
                channel_id,
                instruction=INSTRUCTION,
                opening=opening,
                started_by=member_id,
                at=self.clock(),
                guild_id=guild_id,
                opening_custom=custom,
            )
        except StoryExists as exc:
            raise StoryError("a story is already running here; /story end finishes it") from exc
        story = await self.storage.active_story(channel_id)
        assert story is not None
        return story

    async def show(self, channel_id: int) -> str:
        """The transcript of the running story."""
        story = await self._story(channel_id)
        return buffer_from_lines(story.opening, [(ln.speaker, ln.text) for ln in story.lines]).transcript()

    async def end(self, channel_id: int) -> str:
        """End the running story; return its final transcript.

        Waits for a line being answered here, so the transcript includes it (see `answering`)."""
        async with self._lock(channel_id):
            transcript = await self.show(channel_id)
            await self.storage.end_story(channel_id, at=self.clock())
        return transcript

    @staticmethod
    def _normalised(text: str, *, what: str) -> str:
        """A member's raw text normalised to one line; StoryError for control or direction-override characters,
        or for text that is empty once invisible characters are gone."""
        if problem := member_text_problem(text):
            raise StoryError(f"Kilroy cannot post that {what}: {problem}")
        text = normalise(text, one_line=True)
        if not text:
            raise StoryError(f"the {what} is empty")
        return text

    def _check_member(self, member_id: int | None, text: str, *, what: str) -> None:
        if member_id is not None and self.storage.is_opted_out(member_id):
            raise StoryError(
                "you asked Kilroy to forget you, so it does not keep your words; /opt-in lets you take part again"
            )
        if problem := self.output_filter.member_problem(text):
            raise StoryError(f"Kilroy cannot post that {what}: {problem}")

    async def validate(self, channel_id: int, member_id: int | None, text: str) -> str:
        """Check a human line before any slow work: not empty, not too long, not filtered, room in the queue,
        a story running. Never waits for another member's turn (`take_turn` checks again when its turn comes).

        Returns the normalised line. Raises StoryError or GeneratorBusy with a message for the member.
        """
        text, _ = await self._checked(channel_id, member_id, text)
        return text

    async def _checked(self, channel_id: int, member_id: int | None, text: str) -> tuple[str, Story]:
        from bot.engine.generator import GeneratorBusy

        text = self._normalised(text, what="line")
        if len(text) > self.settings.max_line_chars:
            raise StoryError(f"the line is {len(text)} characters long; keep it under {self.settings.max_line_chars}")
        self._check_member(member_id, text, what="line")
        if getattr(self.generator, "busy", False):
            raise GeneratorBusy()
        return text, await self._story(channel_id)

    async def take_turn(
        self,
        channel_id: int,
        member_id: int | None,
        text: str,
        *,
        send: Send | None = None,
        guild_id: int | None = None,
    ) -> Turn:
        """One whole exchange, one channel's turns one at a time: answer the human line, `send` the answer, record
        both. A second member's line waits until the first is recorded, and its answer sees that exchange.

        Nothing is recorded if any step fails. Raises StoryError or GeneratorBusy with a message for the member.
        """
        async with self._lock(channel_id):
            turn = await self._answer(channel_id, member_id, text)
            message_id = await send(turn) if send is not None else None
            post_id = await self._record(turn, message_id=message_id, guild_id=guild_id)
        return dataclasses.replace(turn, post_id=post_id)

    async def _answer(self, channel_id: int, member_id: int | None, text: str) -> Turn:
        """Write the machine director's answer to a human line (under the channel's lock); records nothing.

        The answer passes the output filter (resampled up to KILROY_STORY_RETRIES times).
        """
        text, story = await self._checked(channel_id, member_id, text)
        lines = [(ln.speaker, ln.text) for ln in story.lines] + [(HUMAN, text)]
        buffer = buffer_from_lines(story.opening, lines, story.instruction)
        budget = self.generator.context_size - self.settings.max_new_tokens - 1  # BOS
        prompt = buffer.render(self.generator.count_tokens, budget)
        for attempt in range(self.settings.retries):
            (sample,) = await self.generator.generate(1, prompt=prompt, max_new_tokens=self.settings.max_new_tokens)
            verdict = self.output_filter.check_generated(parse_answer(sample.text))
            if verdict.ok:
                return Turn(story.id, channel_id, text, member_id, verdict.text, sample)
            log.info("story answer refused: %s (attempt %d of %d)", verdict.reason, attempt + 1, self.settings.retries)
        self.output_filter.gave_up()
        raise StoryError(
            f"the machine director had nothing to say after {self.settings.retries} tries; try another line"
        )

    async def _record(self, turn: Turn, *, message_id: int | None, guild_id: int | None) -> int:
        """Record the whole turn in one transaction: the human line, and the machine's line as a story line and a
        post of kind `story` (so reactions on it count). Returns the post id; StoryError if the story ended."""
        from bot.storage import StoryEnded

        now = self.clock()
        answer = NewPost.from_sample(
            turn.sample,
            channel_id=turn.channel_id,
            created_at=now,
            message_id=message_id,
            guild_id=guild_id,
            kind="story",
            text=turn.text,
        )
        try:
            return await self.storage.add_story_turn(
                turn.story_id, human_text=turn.human_text, member_id=turn.member_id, answer=answer, at=now
            )
        except StoryEnded as exc:  # ended by a path that does not take the channel's lock: drop the turn
            raise StoryEndedMeanwhile() from exc

    async def _story(self, channel_id: int) -> Story:
        story = await self.storage.active_story(channel_id)
        if story is None:
            raise NoStory()
        return story
