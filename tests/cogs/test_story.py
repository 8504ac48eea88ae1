import json

import pytest

from bot.engine.generator import Generator, SamplingParams
from bot.engine.model import load_base
from bot.storage import Storage
from bot.stories.service import StoryError, StoryService
from cogs.story import Story
from tests.support.discord_mocks import interaction, member, texts
from tests.support.storage import add_story_line, get_post

pytestmark = pytest.mark.slow


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
async def generator(tiny_settings):
    s = tiny_settings()
    g = Generator(load_base(s.model, s.data_dir, device="cpu"), SamplingParams(max_new_tokens=24))
    yield g
    await g.close()


def make_cog(storage, generator, settings, clock):
    return Story(stories=StoryService(storage, generator, settings.story, clock=clock))


async def test_start_line_show_end(tiny_settings, storage, generator):
    """The whole exchange through the cog: the machine answers, its line becomes a story post."""
    settings, clock = tiny_settings(), Clock()
    cog = make_cog(storage, generator, settings, clock)
    await cog.start.callback(cog, interaction(member(1)), None)
    i = interaction(member(1))
    await cog.line.callback(cog, i, "She opens the window.")
    assert i.response.defer.called
    (answer,) = texts(i.followup.send)
    assert "human_director:** She opens the window." in answer and "**machine_director:** " in answer
    posts = await storage.post_records()
    assert [p.post.kind for p in posts] == ["story"] and posts[0].post.message_id is not None
    i = interaction(member(1))
    await cog.show.callback(cog, i)
    shown = texts(i.response.send_message)[0]
    assert shown.startswith("Continue the story in a surprising and interesting way.")
    assert "human_director: She opens the window." in shown and "machine_director: " in shown
    await cog.end.callback(cog, interaction(member(1)))
    with pytest.raises(StoryError, match="no story"):
        await cog.show.callback(cog, interaction(member(1)))


async def test_story_survives_restart(tiny_settings, tmp_path, generator):
    """A new bot instance over the same database continues the same story."""
    settings, clock = tiny_settings(), Clock()
    db = tmp_path / "story.db"
    async with Storage.open(db) as storage:
        cog = make_cog(storage, generator, settings, clock)
        await cog.start.callback(cog, interaction(), "A lighthouse at night.")
        await cog.line.callback(cog, interaction(member(1)), "The lamp goes out.")
    async with Storage.open(db) as storage:
        cog = make_cog(storage, generator, settings, clock)
        i = interaction(member(1))
        await cog.show.callback(cog, i)
        shown = texts(i.response.send_message)[0]
        assert "A lighthouse at night." in shown and "human_director: The lamp goes out." in shown
        assert shown.count("machine_director:") == 1


async def test_length_limit_and_filtered_lines(tiny_settings, storage, generator):
    """Too-long lines, invite links and URLs are refused before deferring, so the refusal stays ephemeral.

    (Per-member cooldowns are taken by the command tree before any await: tests/domain/test_safety.py and the e2e test.)
    """
    settings = tiny_settings(KILROY_STORY_MAX_LINE_CHARS="40")
    cog = make_cog(storage, generator, settings, Clock())
    await cog.start.callback(cog, interaction(), None)
    for text, match in (("x" * 41, "under 40"), ("join discord.gg/abc", "invite"), ("see https://x.org", "link")):
        i = interaction(member(1))
        with pytest.raises(StoryError, match=match):
            await cog.line.callback(cog, i, text)
        assert not i.response.defer.called
    with pytest.raises(StoryError, match="invite"):
        await cog.start.callback(cog, interaction(channel_id=9), "come to discord.gg/x")
    assert (await storage.active_story(500)).lines == ()  # nothing refused was stored


async def test_echoed_line_and_answer_never_ping(tiny_settings, storage):
    """A member's <@id> and @everyone are escaped when echoed; a generated @everyone is neutralised; every send
    carries AllowedMentions.none(); a generated invite link is resampled, never sent."""
    settings = tiny_settings()
    gen = ScriptedGenerator(["join discord.gg/spam", "hi @everyone and <@42>"])
    cog = Story(stories=StoryService(storage, gen, settings.story, clock=Clock()))
    await cog.start.callback(cog, interaction(), None)
    i = interaction(member(1))
    await cog.line.callback(cog, i, "hey <@6002> @everyone")
    (answer,) = texts(i.followup.send)
    assert "<@6002>" not in answer and "@everyone" not in answer and "discord.gg" not in answer
    assert "@\u200beveryone" in answer and "<@\u200b42>" in answer
    assert i.followup.send.call_args.kwargs["allowed_mentions"].to_dict() == {"parse": []}
    assert cog.stories.output_filter.resampled["invite"] == 1


class ScriptedGenerator:
    """Returns the given texts in order, one per call."""

    context_size = 256

    def __init__(self, texts):
        self.texts = list(texts)

    def count_tokens(self, text):
        return len(text.split())

    async def generate(self, n, **kw):
        from bot.engine.generator import Sample

        return [Sample(self.texts.pop(0), "", (0,), (1,), "base", {}) for _ in range(n)]


async def test_one_story_per_channel(tiny_settings, storage, generator):
    settings = tiny_settings()
    cog = make_cog(storage, generator, settings, Clock())
    await cog.start.callback(cog, interaction(channel_id=1), None)
    with pytest.raises(StoryError, match="already running"):
        await cog.start.callback(cog, interaction(channel_id=1), None)
    await cog.start.callback(cog, interaction(channel_id=2), None)  # a thread or other channel is independent


async def test_long_transcript_sent_as_file(tiny_settings, storage, generator):
    settings = tiny_settings()
    service = StoryService(storage, generator, settings.story, clock=Clock())
    cog = Story(stories=service)
    story = await service.start(500, opening="o" * 900)
    for _ in range(12):
        await add_story_line(storage, story.id, speaker="human_director", text="y" * 250, member_id=1, at=1.0)
    i = interaction()
    await cog.show.callback(cog, i)
    assert "file" in i.response.send_message.call_args.kwargs


class EmptyGenerator:
    """A generator that only ever produces blank lines."""

    context_size = 256

    def count_tokens(self, text):
        return len(text.split())

    async def generate(self, n, **kw):
        from bot.engine.generator import Sample

        return [Sample("   ", "", (0,), (1,), "base", {}) for _ in range(n)]


async def test_empty_answers_retried_then_reported(tiny_settings, storage):
    settings = tiny_settings(KILROY_STORY_RETRIES="2")
    service = StoryService(storage, EmptyGenerator(), settings.story, clock=Clock())
    await service.start(1)
    with pytest.raises(StoryError, match="after 2 tries"):
        await service.take_turn(1, 5, "hello")


async def test_failed_turns_leave_nothing_in_the_transcript(tiny_settings, storage):
    """Two failed turns, then a good one: the human line appears once, next to its answer."""
    settings = tiny_settings(KILROY_STORY_RETRIES="1", KILROY_STORY_COOLDOWN_SECONDS="0")
    failing = StoryService(storage, EmptyGenerator(), settings.story, clock=Clock())
    await failing.start(1)
    for _ in range(2):
        with pytest.raises(StoryError):
            await failing.take_turn(1, 5, "the door opens")
    assert "the door opens" not in await failing.show(1)

    class OneLine(EmptyGenerator):
        async def generate(self, n, **kw):
            from bot.engine.generator import Sample

            return [Sample("a cat walks in", "", (0,), (1,), "base", {}) for _ in range(n)]

    working = StoryService(storage, OneLine(), settings.story, clock=Clock())

    async def send(turn):
        return 77

    post_id = (await working.take_turn(1, 5, "the door opens", send=send)).post_id
    transcript = await working.show(1)
    assert transcript.count("the door opens") == 1 and transcript.endswith("machine_director: a cat walks in")
    post = await get_post(storage, post_id)
    assert post.kind == "story" and post.text == "a cat walks in" and post.message_id == 77


async def test_opted_out_member_is_not_recorded(tiny_settings, storage, generator):
    """After /forget-me a member's lines and openings are refused (nothing of theirs is kept); a story they start
    with the default opening records no starter."""
    await storage.forget_member(1, at=1.0)
    cog = make_cog(storage, generator, tiny_settings(), Clock())
    with pytest.raises(StoryError, match="forget"):
        await cog.start.callback(cog, interaction(member(1)), "my own opening")
    await cog.start.callback(cog, interaction(member(1)), None)
    assert (await storage.member_data(1))["stories_started"] == []
    i = interaction(member(1))
    with pytest.raises(StoryError, match="opt-in"):
        await cog.line.callback(cog, i, "a line")
    assert not i.response.defer.called


async def test_forget_me_during_a_turn_keeps_none_of_their_words(tiny_settings, storage):
    """A member who uses /forget-me while their line is being answered: the turn lands without their words or id."""

    class OneLine(EmptyGenerator):
        async def generate(self, n, **kw):
            from bot.engine.generator import Sample

            return [Sample("a cat walks in", "p", (0,), (1,), "base", {}) for _ in range(n)]

    settings = tiny_settings(KILROY_STORY_COOLDOWN_SECONDS="0")
    service = StoryService(storage, OneLine(), settings.story, clock=Clock())
    await service.start(1)

    async def send(turn):
        await storage.forget_member(42)  # lands while the answer is being sent
        return 5

    post_id = (await service.take_turn(1, 42, "my secret words", send=send)).post_id
    assert "my secret words" not in await service.show(1)
    assert "my secret words" not in json.dumps(await storage.member_data(42))
    post = await get_post(storage, post_id)
    assert post.prompt == "" and post.prompt_ids == ()
    assert await storage.post_records(untrained_only=True) == []  # a redacted prompt is never trained on
