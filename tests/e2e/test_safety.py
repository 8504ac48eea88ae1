"""End-to-end safety and privacy (issue 12): the real bot against the fake Discord.

Where a test needs the model to write something specific ("@everyone", an invite link), it replaces only the
generator's `generate` on the running instance; everything between it and Discord is the real code path.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time

import pytest

from bot.engine.generator import Sample
from tests.support import fake_discord as fd
from tests.support.e2e import running_bot, until

pytestmark = pytest.mark.slow

FORGETFUL_ID = 424242424242424242  # a distinctive id: a scan of the database for it cannot hit token ids by chance


def script(bot, texts: list[str]) -> None:
    """Make the running bot's generator write `texts` in order (the last one repeats)."""
    queue = list(texts)

    async def generate(n: int = 1, **kw):
        out = []
        for _ in range(n):
            text = queue.pop(0) if len(queue) > 1 else queue[0]
            out.append(Sample(text, kw.get("prompt", ""), (0,), (1, 2), "base", {}))
        return out

    bot.services.generator.generate = generate


def assert_no_mentions(server: fd.FakeDiscord) -> list[str]:
    """Every body the bot sent with text disallows mentions; return the texts."""
    bodies = server.sent_bodies()
    assert bodies
    for body in bodies:
        assert body.get("allowed_mentions") == {"parse": []}, body
    return [b["content"] for b in bodies]


async def _has(mapping, key) -> bool:
    await asyncio.sleep(0)
    return bool(mapping.get(key))


async def test_no_pings_from_generated_post_or_story_line(server, e2e_settings):
    """A generated "@everyone" and a story line with <@id> and "@everyone" reach Discord with mentions disallowed in
    every request body, and the text itself is neutralised."""
    async with running_bot(e2e_settings(), server) as bot:
        script(bot, [f"hello @everyone and <@{fd.MEMBER_ID}> and @here"])
        message = await bot.get_cog("Posting").post_to(fd.CHANNEL_ID)
        assert message is not None
        started, _ = await server.slash(fd.MEMBER_ID, "story", "start")
        # a member sees the story start before adding a line (the two interactions would otherwise race)
        await until(lambda: _has(server.callbacks, started))
        _, token = await server.slash(fd.MEMBER_ID, "story", "line", text=f"<@{fd.MODERATOR_ID}> @everyone look")
        await until(lambda: _has(server.webhook_messages, token))
    texts = assert_no_mentions(server)
    joined = "\n".join(texts)
    assert "@everyone" not in joined and "@here" not in joined and f"<@{fd.MODERATOR_ID}>" not in joined
    assert f"<@{fd.MEMBER_ID}>" not in joined
    assert "@\u200beveryone" in server.posts_by_bot()[0]["content"]


async def test_invite_link_in_generated_post_is_never_sent(server, e2e_settings):
    """Samples with an invite link are resampled and, if every try has one, the post is skipped."""
    async with running_bot(e2e_settings(), server) as bot:
        script(bot, ["come to discord.gg/spam now"])
        assert await bot.get_cog("Posting").post_to(fd.CHANNEL_ID) is None
        script(bot, ["discord.com/invite/abc", "a clean post"])
        assert await bot.get_cog("Posting").post_to(fd.CHANNEL_ID) is not None
        assert bot.services.output_filter.resampled["invite"] >= 2 and bot.services.output_filter.skipped == 1
    assert [m["content"] for m in server.posts_by_bot()] == ["a clean post"]
    assert not any("discord.gg" in t or "invite" in t for t in assert_no_mentions(server))


async def test_second_server_owner_gets_nothing(server, e2e_settings):
    """With KILROY_GUILD_IDS set, the owner of another server the bot is in cannot /retrain, /adapter or /stats:
    the bot answers nothing there and starts nothing."""
    async with running_bot(e2e_settings(), server) as bot:
        await bot.get_cog("Posting").post_to(fd.CHANNEL_ID)
        calls = [
            await server.slash(fd.OWNER2_ID, "retrain", guild_id=fd.GUILD2_ID, channel_id=fd.CHANNEL2_ID),
            await server.slash(
                fd.OWNER2_ID, "adapter", "use", guild_id=fd.GUILD2_ID, channel_id=fd.CHANNEL2_ID, name="base"
            ),
            await server.slash(fd.OWNER2_ID, "stats", guild_id=fd.GUILD2_ID, channel_id=fd.CHANNEL2_ID),
        ]
        # a command in the allowed server is answered meanwhile, so the silence above is not a slow bot
        _, token = await server.slash(fd.MEMBER_ID, "forget-me")
        await until(lambda: _has(server.webhook_messages, token))
        await asyncio.sleep(1.0)
        assert all(not server.callbacks.get(i) for i, _ in calls)
        assert not any(t in server.webhook_messages or t in server.original_edits for _, t in calls)
        assert await bot.services.storage.runs() == []
        assert bot.services.generator.active == "base"


async def test_stats_never_show_another_servers_posts(server, e2e_settings):
    """With both servers allowed (KILROY_GUILD_IDS empty), /stats in one server counts only its own posts."""
    settings = e2e_settings(KILROY_GUILD_IDS="")
    async with running_bot(settings, server) as bot:
        script(bot, ["a post in the first server"])
        await bot.get_cog("Posting").post_to(fd.CHANNEL_ID)
        _, token = await server.slash(fd.OWNER2_ID, "stats", guild_id=fd.GUILD2_ID, channel_id=fd.CHANNEL2_ID)
        await until(lambda: _has(server.webhook_messages, token))
    answer = server.webhook_messages[token][0]["content"]
    assert "No posts" in answer and "first server" not in answer


async def test_forget_me_survives_restart(server, e2e_settings):
    """/my-data shows a member's records; /forget-me then leaves no row holding their id or a vote of theirs, even
    after a restart whose catch-up sees their reaction still on the message."""
    server.members[FORGETFUL_ID] = fd.member(FORGETFUL_ID, "forgetful")
    settings = e2e_settings(KILROY_SETTLE_HOURS="12")  # the catch-up covers posts inside the settle window
    async with running_bot(settings, server) as bot:
        mid = (await bot.get_cog("Posting").post_to(fd.CHANNEL_ID)).id
        await server.react(mid, FORGETFUL_ID, "❤️")
        await server.react(mid, fd.MEMBER_ID, "👍")
        await server.reply(mid, FORGETFUL_ID)
        iid, _ = await server.slash(FORGETFUL_ID, "story", "start", opening="My own secret opening.")
        await until(lambda: _has(server.callbacks, iid))
        _, token = await server.slash(FORGETFUL_ID, "story", "line", text="My own secret line.")
        await until(lambda: _has(server.webhook_messages, token), timeout=30)
        await until(lambda: _stored_story_lines(bot, 2))

        iid, token = await server.slash(FORGETFUL_ID, "my-data")
        await until(lambda: _has(server.webhook_messages, token))
        assert server.callbacks[iid][0]["data"]["flags"] & 64  # "thinking" privately first
        data = server.webhook_messages[token][0]
        assert data["flags"] & 64 and data["_files"]  # ephemeral, with the JSON file
        assert "1 votes" in data["content"] and "1 story lines" in data["content"]

        iid, token = await server.slash(FORGETFUL_ID, "forget-me")
        await until(lambda: _has(server.webhook_messages, token))
        assert server.callbacks[iid][0]["data"]["flags"] & 64
        answer = server.webhook_messages[token][0]
        assert answer["flags"] & 64 and "1 votes" in answer["content"] and "never stored" not in answer["content"]
    assert FORGETFUL_ID in server.reactions[mid]["❤️"]  # their reaction still sits on the message
    async with running_bot(settings, server) as bot:
        await until(lambda: _catch_up_done(bot))
        await server.react(mid, FORGETFUL_ID, "🎉")  # a live reaction after the restart
        await asyncio.sleep(0.5)
    leaks = _rows_holding(settings.db_path, FORGETFUL_ID, ["My own secret"])
    assert leaks == []
    with sqlite3.connect(settings.db_path) as db:
        assert db.execute("SELECT member_id, emoji FROM votes").fetchall() == [(fd.MEMBER_ID, "👍")]


async def test_five_simultaneous_story_lines_one_accepted(server, e2e_settings):
    """Five /story line from one member at the same moment: one is accepted, four are told to slow down."""
    async with running_bot(e2e_settings(KILROY_STORY_COOLDOWN_SECONDS="60"), server) as bot:
        iid, _ = await server.slash(fd.MEMBER_ID, "story", "start")
        await until(lambda: _has(server.callbacks, iid))
        calls = await asyncio.gather(*(server.slash(fd.MEMBER_ID, "story", "line", text=f"line {n}") for n in range(5)))
        await until(lambda: _all_answered(server, calls), timeout=30)
        first = [server.callbacks[i][0] for i, _ in calls]
        accepted = [c for c in first if c["type"] == 5]
        refused = [c for c in first if c["type"] == 4]
        assert len(accepted) == 1 and len(refused) == 4
        assert all("Slow down" in c["data"]["content"] and c["data"]["flags"] & 64 for c in refused)
        await until(lambda: _stored_story_lines(bot, 2), timeout=30)
        story = await bot.services.storage.active_story(fd.CHANNEL_ID)
        assert [ln.speaker for ln in story.lines] == ["human_director", "machine_director"]


async def test_full_queue_answers_busy_within_3s(server, e2e_settings):
    """With KILROY_MAX_QUEUE=1 and one generation waiting, the next member's line is answered "busy" within 3 s."""
    async with running_bot(e2e_settings(KILROY_MAX_QUEUE="1"), server) as bot:
        iid, _ = await server.slash(fd.MEMBER_ID, "story", "start")
        await until(lambda: _has(server.callbacks, iid))
        gen = bot.services.generator
        gen._executor.submit(time.sleep, 5)  # the model thread is busy (a long generation)
        await server.slash(fd.MEMBER_ID, "story", "line", text="first")  # waits in the queue

        async def queued():
            return gen.busy

        await until(queued)
        sent = time.monotonic()
        iid, _ = await server.slash(fd.MODERATOR_ID, "story", "line", text="second")
        await until(lambda: _has(server.callbacks, iid), timeout=3)
        took = time.monotonic() - sent
        answer = server.callbacks[iid][0]
        assert answer["type"] == 4 and answer["data"]["flags"] & 64 and "busy" in answer["data"]["content"]
        assert took < 3.0
        print(f"busy answer after {took * 1000:.0f} ms")


async def test_leaves_other_servers_when_configured(server, e2e_settings):
    """KILROY_LEAVE_OTHER_GUILDS=true: the bot leaves a server outside KILROY_GUILD_IDS at start."""
    async with running_bot(e2e_settings(KILROY_LEAVE_OTHER_GUILDS="true"), server):

        async def left():
            return fd.GUILD2_ID in server.left_guilds

        await until(left)
    assert fd.GUILD_ID not in server.left_guilds


# --- helpers ----------------------------------------------------------------------------------------------------------


async def _stored_story_lines(bot, n: int) -> bool:
    story = await bot.services.storage.active_story(fd.CHANNEL_ID)
    return story is not None and len(story.lines) >= n


async def _catch_up_done(bot) -> bool:
    task = bot.get_cog("Engagement")._catchup
    await asyncio.sleep(0)
    return task is not None and task.done()


async def _all_answered(server, calls) -> bool:
    await asyncio.sleep(0)
    return all(server.callbacks.get(i) for i, _ in calls)


def _rows_holding(db_path, member_id: int, phrases: list[str]) -> list[tuple[str, str]]:
    """(table, column) pairs where any row holds the member id (as a number or inside text) or one of the phrases."""
    found = []
    with sqlite3.connect(db_path) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for col in [r[1] for r in db.execute(f"PRAGMA table_info({table})")]:
                n = db.execute(
                    f"SELECT COUNT(*) FROM {table} WHERE {col} = ? OR instr(CAST({col} AS TEXT), ?) > 0"
                    + "".join(f" OR instr(CAST({col} AS TEXT), ?) > 0" for _ in phrases),
                    (member_id, str(member_id), *phrases),
                ).fetchone()[0]
                if n:
                    found.append((table, col))
    return found
