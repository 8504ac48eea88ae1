"""Stories ('exquisite corpse') and their lines."""

from __future__ import annotations

import dataclasses

from bot.domain.records import NewPost, Story, StoryLine
from bot.storage._conn import IntegrityError
from bot.storage.posts import PostsMixin
from bot.storage.privacy import REMOVED


class StoriesMixin(PostsMixin):
    """Stories per channel, one running at a time."""

    # --- stories -----------------------------------------------------------------------------------------------------

    async def active_story(self, channel_id: int) -> Story | None:
        """The channel's running story with its lines, or None."""
        async with self.db.execute(
            "SELECT id, channel_id, instruction, opening, started_at, ended_at FROM stories "
            "WHERE channel_id = ? AND ended_at IS NULL",
            (channel_id,),
        ) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        async with self.db.execute(
            "SELECT seq, speaker, text, member_id, at FROM story_lines WHERE story_id = ? ORDER BY seq", (row[0],)
        ) as cur:
            lines = tuple(StoryLine(int(s), str(sp), str(t), m, float(a)) for s, sp, t, m, a in await cur.fetchall())
        return Story(int(row[0]), int(row[1]), str(row[2]), str(row[3]), float(row[4]), row[5], lines)

    async def start_story(
        self,
        channel_id: int,
        *,
        instruction: str,
        opening: str,
        started_by: int | None,
        at: float,
        guild_id: int | None = None,
        opening_custom: bool = True,
    ) -> int:
        """Start a story in a channel; raises StoryExists if one is running there.

        `opening_custom` says the opening is the starter's own words (forget-me then removes it).
        """
        async with self.transaction():
            if started_by is not None and self._opted_out(started_by):
                # they used /forget-me: the story starts, with nothing of theirs in it
                started_by, opening = None, REMOVED if opening_custom else opening
            try:
                cur = await self.db.execute(
                    "INSERT INTO stories (channel_id, instruction, opening, started_by, started_at, guild_id, "
                    "opening_custom) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    (channel_id, instruction, opening, started_by, at, guild_id, int(opening_custom)),
                )
            except IntegrityError as exc:  # the one running story per channel (a unique partial index)
                raise StoryExists(channel_id) from exc
            (row,) = await cur.fetchall()
            return int(row[0])

    async def add_story_turn(
        self,
        story_id: int,
        *,
        human_text: str,
        member_id: int | None,
        answer: NewPost,
        at: float,
    ) -> int:
        """One exchange, all or nothing: the human director's line, the machine's answer as a post (so reactions on
        it count) and as a story line. Called only after the answer was generated (and sent): a failed turn leaves
        nothing behind. Returns the answer's post id; raises StoryEnded (adding nothing) if the story has ended."""
        async with self.transaction():
            async with self.db.execute("SELECT ended_at FROM stories WHERE id = ?", (story_id,)) as cur:
                row = await cur.fetchone()
            if row is None or row[0] is not None:
                raise StoryEnded(story_id)
            if member_id is not None and self._opted_out(member_id):
                # they used /forget-me while the answer was being written: keep the story's shape, not their words
                human_text, member_id = REMOVED, None
                answer = dataclasses.replace(answer, prompt="", prompt_ids=())
                post_id = await self._insert_post(answer)
                await self.db.execute("UPDATE posts SET redacted = 1 WHERE id = ?", (post_id,))
            else:
                post_id = await self._insert_post(answer)
            lines = [("human_director", human_text, member_id, None), ("machine_director", answer.text, None, post_id)]
            await self._append_lines(story_id, lines, at=at)
        return post_id

    async def _append_lines(
        self, story_id: int, lines: list[tuple[str, str, int | None, int | None]], *, at: float
    ) -> int:
        """Append (speaker, text, member, post) lines after the story's last; inside a transaction. First seq."""
        async with self.db.execute(
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM story_lines WHERE story_id = ?", (story_id,)
        ) as cur:
            row = await cur.fetchone()
        first = int(row[0]) if row else 1
        await self.db.executemany(
            "INSERT INTO story_lines (story_id, seq, speaker, text, member_id, post_id, at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(story_id, first + i, sp, text, member, post, at) for i, (sp, text, member, post) in enumerate(lines)],
        )
        return first

    async def end_story(self, channel_id: int, *, at: float) -> bool:
        """End the channel's running story; True if there was one."""
        async with self._write:
            cur = await self.db.execute(
                "UPDATE stories SET ended_at = ? WHERE channel_id = ? AND ended_at IS NULL", (at, channel_id)
            )
            return cur.rowcount == 1


class StoryExists(Exception):
    """A story is already running in this channel."""

    def __init__(self, channel_id: int) -> None:
        super().__init__(f"a story is already running in channel {channel_id}")
        self.channel_id = channel_id


class StoryEnded(Exception):
    """The story a turn was written for has ended (or is gone); the turn was not added."""

    def __init__(self, story_id: int) -> None:
        super().__init__(f"story {story_id} has ended")
        self.story_id = story_id
