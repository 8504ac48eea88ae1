"""Story turns in one channel, taken at the same time: one at a time, and never into an ended story."""

import asyncio

import pytest

from bot.config.settings import StorySettings
from bot.engine.generator import Sample
from bot.storage import NewPost, StoryEnded
from bot.stories.service import StoryError, StoryService
from cogs.story import Story
from tests.support.discord_mocks import interaction, member, texts

CHANNEL = 5
ANSWERS = ["A cat walks in.", "The lamp goes out.", "Rain starts."]


class GatedGenerator:
    """Answers in order from ANSWERS, each only once `release` is set; remembers every prompt."""

    context_size = 1024
    busy = False

    def __init__(self):
        self.prompts: list[str] = []
        self.generating = asyncio.Event()
        self.release = asyncio.Event()

    def count_tokens(self, text):
        return len(text.split())

    async def generate(self, n, *, prompt, max_new_tokens=None, adapter=None):
        self.prompts.append(prompt)
        answer = ANSWERS[len(self.prompts) - 1]
        self.generating.set()
        await self.release.wait()
        return [Sample(answer, prompt, (1,), (2,), "base", {})]


class Clock:
    """Each reading is one second after the last."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        self.now += 1
        return self.now


@pytest.fixture
async def service(storage):
    service = StoryService(storage, GatedGenerator(), StorySettings(), clock=Clock())
    await service.start(CHANNEL, guild_id=1)
    return service


async def turn(service, member_id, text, message_id=None):
    """What the cog does: validate, then the whole turn."""

    async def send(_turn):
        return message_id

    await service.validate(CHANNEL, member_id, text)
    return await service.take_turn(CHANNEL, member_id, text, send=send, guild_id=1)


async def stored_lines(storage, story_id):
    rows = await storage.db.execute_fetchall(
        "SELECT speaker, text, at FROM story_lines WHERE story_id = ? ORDER BY seq", (story_id,)
    )
    return [(speaker, text) for speaker, text, _ in rows], [at for *_, at in rows]


async def test_two_lines_at_once_take_turns(service, storage):
    """The second member's line waits for the first exchange and is answered with it in the prompt."""
    gen = service.generator
    first = asyncio.create_task(turn(service, 1, "She opens the window."))
    await gen.generating.wait()
    second = asyncio.create_task(turn(service, 2, "A bird flies in."))
    await asyncio.sleep(0.05)  # every chance for the second line to start generating blind
    gen.release.set()
    await asyncio.gather(first, second)

    assert len(gen.prompts) == 2
    assert "A bird flies in." not in gen.prompts[0]
    assert "human_director: She opens the window.\nmachine_director: A cat walks in.\n" in gen.prompts[1]
    expected = [
        ("human_director", "She opens the window."),
        ("machine_director", "A cat walks in."),
        ("human_director", "A bird flies in."),
        ("machine_director", "The lamp goes out."),
    ]
    story = await storage.active_story(CHANNEL)
    assert [(ln.speaker, ln.text) for ln in story.lines] == expected
    assert (await service.show(CHANNEL)).endswith("\n".join(f"{s}: {t}" for s, t in expected))


async def test_end_during_a_line_waits_for_it(service, storage):
    """/story end while a line is answered: the transcript includes that turn, the stored rows say the same, no
    line lands after the end, and a line given after the end adds nothing."""
    gen = service.generator
    story_id = (await storage.active_story(CHANNEL)).id
    line = asyncio.create_task(turn(service, 1, "She opens the window."))
    await gen.generating.wait()
    ending = asyncio.create_task(service.end(CHANNEL))
    await asyncio.sleep(0.05)
    late = asyncio.create_task(service.take_turn(CHANNEL, 2, "Too late."))  # given after /story end
    await asyncio.sleep(0.05)
    gen.release.set()
    transcript = await ending
    await line
    with pytest.raises(StoryError, match="no story"):
        await late

    assert transcript.endswith("human_director: She opens the window.\nmachine_director: A cat walks in.")
    lines, ats = await stored_lines(storage, story_id)
    assert lines == [("human_director", "She opens the window."), ("machine_director", "A cat walks in.")]
    (ended_at,) = (await storage.db.execute_fetchall("SELECT ended_at FROM stories WHERE id = ?", (story_id,)))[0]
    assert ended_at is not None and all(at < ended_at for at in ats)
    assert [p.post.text for p in await storage.post_records()] == ["A cat walks in."]
    assert len(gen.prompts) == 1  # the late line was never answered


async def test_story_ended_meanwhile_adds_nothing(service, storage):
    """Ended without waiting (straight in the database) while a line is answered: the member is told, and neither
    the line, the answer nor a post is stored."""
    gen = service.generator
    story_id = (await storage.active_story(CHANNEL)).id
    line = asyncio.create_task(turn(service, 1, "She opens the window."))
    await gen.generating.wait()
    assert await storage.end_story(CHANNEL, at=2000.0)
    gen.release.set()
    with pytest.raises(StoryError, match="the story ended while Kilroy was answering; nothing was added"):
        await line
    assert await stored_lines(storage, story_id) == ([], [])
    assert await storage.post_records() == []


async def test_add_story_turn_refuses_an_ended_story(storage):
    story_id = await storage.start_story(7, instruction="i", opening="o", started_by=None, at=1.0)
    await storage.end_story(7, at=2.0)
    answer = NewPost.from_sample(
        Sample("an answer", "p", (1,), (2,), "base", {}), channel_id=7, created_at=3.0, kind="story", text="an answer"
    )
    with pytest.raises(StoryEnded):
        await storage.add_story_turn(story_id, human_text="a line", member_id=1, answer=answer, at=3.0)
    assert await stored_lines(storage, story_id) == ([], [])
    assert await storage.post_records() == []


async def test_cog_lines_at_once(service, storage):
    """Through the cog: the waiting member is acknowledged at once (deferred), a refusal meanwhile stays private
    (no defer: an ephemeral error), the answers are posted in turn and /story end waits (deferred) for them."""
    gen = service.generator
    cog = Story(stories=service)
    first, second, refused, ending = (interaction(member(n), channel_id=CHANNEL) for n in (1, 2, 3, 1))
    line1 = asyncio.create_task(cog.line.callback(cog, first, "She opens the window."))
    await gen.generating.wait()
    line2 = asyncio.create_task(cog.line.callback(cog, second, "A bird flies in."))
    with pytest.raises(StoryError, match="under"):
        await asyncio.wait_for(cog.line.callback(cog, refused, "x" * 10_000), timeout=1)
    assert not refused.response.defer.called
    await asyncio.sleep(0.05)
    assert second.response.defer.called and not second.followup.send.called
    end = asyncio.create_task(cog.end.callback(cog, ending))
    await asyncio.sleep(0.05)
    assert ending.response.defer.called
    gen.release.set()
    await asyncio.gather(line1, line2, end)

    assert texts(first.followup.send) == [
        "**human_director:** She opens the window.\n**machine_director:** A cat walks in."
    ]
    assert texts(second.followup.send) == [
        "**human_director:** A bird flies in.\n**machine_director:** The lamp goes out."
    ]
    (final,) = texts(ending.followup.send)
    assert final.startswith("The end.\n") and final.endswith(
        "human_director: She opens the window.\nmachine_director: A cat walks in.\n"
        "human_director: A bird flies in.\nmachine_director: The lamp goes out."
    )
    messages = {p.post.text: p.post.message_id for p in await storage.post_records()}
    assert messages == {
        "A cat walks in.": first.followup.send.return_value.id,
        "The lamp goes out.": second.followup.send.return_value.id,
    }


# --- member text is normalised before it is checked, and stored and echoed as checked (issue 23, item 6) -------------


class Answers:
    """Answers every line at once with the same text."""

    context_size = 1024
    busy = False

    def count_tokens(self, text):
        return len(text.split())

    async def generate(self, n, *, prompt, max_new_tokens=None, adapter=None):
        return [Sample("The lamp goes out.", prompt, (1,), (2,), "base", {})]


def filtered_service(storage):
    from bot.domain.safety import OutputFilter

    blocking = OutputFilter(("kill yourself",))
    return StoryService(storage, Answers(), StorySettings(), clock=Clock(), output_filter=blocking)


@pytest.mark.parametrize("opening", ["kill  yourself", "kill\nyourself", "kill\u200b yourself", "k\u0456ll yourself"])
async def test_opening_checked_after_normalising(storage, opening):
    """Regression: /story start checked the opening before collapsing whitespace, so `kill  yourself` passed a
    blocklist holding `kill yourself` and was stored and echoed collapsed."""
    with pytest.raises(StoryError, match="blocked"):
        await filtered_service(storage).start(CHANNEL, opening=opening, member_id=1, guild_id=1)
    assert await storage.active_story(CHANNEL) is None


async def test_opening_stored_as_checked(storage):
    story = await filtered_service(storage).start(
        CHANNEL, opening="Once\u200b upon \u00a0a\ttime\u00ad \uff41gain", member_id=1, guild_id=1
    )
    assert story.opening == "Once upon a time again"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("a NUL\x00 here", "control"),
        ("an ESC \x1b[2J clears", "control"),
        ("\u202etxet desrever", "direction"),
        ("\u200b\u200b\u200b", "empty"),
        ("\u200d\u2060\ufeff\u00ad", "empty"),
    ],
)
async def test_member_lines_refuse_controls_overrides_and_invisible_only(storage, text, why):
    service = filtered_service(storage)
    await service.start(CHANNEL, guild_id=1)
    with pytest.raises(StoryError, match=why):
        await service.validate(CHANNEL, 1, text)
    with pytest.raises(StoryError, match=why):
        await service.take_turn(CHANNEL, 1, text, guild_id=1)
    with pytest.raises(StoryError, match=why):
        await filtered_service(storage).start(CHANNEL + 1, opening=text, member_id=1, guild_id=1)


async def test_line_stored_and_echoed_as_checked(storage):
    """The cog echoes the normalised line, the one that was checked and stored, not the raw one."""
    service = filtered_service(storage)
    await service.start(CHANNEL, guild_id=1)
    cog = Story(stories=service)
    i = interaction(member(1), channel_id=CHANNEL)
    await cog.line.callback(cog, i, "A  bird\u200b flies\u00a0in.")
    (answer,) = texts(i.followup.send)
    assert answer.startswith("**human_director:** A bird flies in.\n")
    story = await storage.active_story(CHANNEL)
    assert [ln.text for ln in story.lines] == ["A bird flies in.", "The lamp goes out."]
