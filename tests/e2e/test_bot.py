"""End-to-end: the real discord.py client and the real bot, against a fake Discord on loopback. Nothing is mocked
inside the bot process."""

from __future__ import annotations

import asyncio
import os
import re

import pytest

from tests.support import fake_discord as fd
from tests.support.e2e import running_bot, until
from tests.support.storage import number_of_posts, post_by_message

pytestmark = pytest.mark.slow


async def post_once(bot) -> int:
    """Make the posting cog post one message through REST; return its id."""
    message = await bot.get_cog("Posting").post_to(fd.CHANNEL_ID)
    assert message is not None
    return message.id


async def votes(bot, message_id):
    post = await post_by_message(bot.services.storage, message_id)
    recs = [r for r in await bot.services.storage.post_records() if r.post.id == post.id]
    return sorted((v.member_id, v.emoji) for v in recs[0].votes), recs[0]


async def test_scheduled_post_arrives_and_is_stored(server, e2e_settings):
    # the loop's first round runs at start, after a jitter of up to 10% of the interval (6 s for the 1-minute minimum)
    settings = e2e_settings(KILROY_POST_CHANNEL_IDS=str(fd.CHANNEL_ID), KILROY_POST_INTERVAL_MINUTES="1")
    async with running_bot(settings, server) as bot:

        async def posted():
            return bool(server.posts_by_bot()) and await number_of_posts(bot.services.storage) >= 1

        await until(posted)
        msg = server.posts_by_bot()[0]
        post = await post_by_message(bot.services.storage, int(msg["id"]))
        assert post is not None and post.text == msg["content"] and post.completion_ids
    # the slash commands were synced to the configured guild at start
    assert any(r.method == "PUT" and f"/guilds/{fd.GUILD_ID}/commands" in r.path for r in server.requests)
    # and Discord's global set was emptied, so servers that once had them globally do not list every command twice
    global_puts = [r for r in server.requests if r.method == "PUT" and r.path == f"/applications/{fd.APP_ID}/commands"]
    assert global_puts and global_puts[-1].body == []


async def test_reactions_and_replies(server, e2e_settings):
    """Add then remove through gateway events leaves the right score; a bot's reaction is ignored; a reply counts."""
    async with running_bot(e2e_settings(), server) as bot:
        mid = await post_once(bot)
        await server.react(mid, fd.MEMBER_ID, "❤️")
        await server.react(mid, fd.OPERATOR_ID, "❤️")
        await server.react(mid, fd.OTHER_BOT_ID, "🤖")
        await server.react(mid, fd.OPERATOR_ID, "❤️", add=False)
        await server.reply(mid, fd.MODERATOR_ID)

        async def settled():
            v, rec = await votes(bot, mid)
            return v == [(fd.MEMBER_ID, "❤️")] and len(rec.replies) == 1

        await until(settled)
        from bot.domain.scoring import score_post

        _, rec = await votes(bot, mid)
        assert score_post(rec, bot.settings.scoring) == 1.0 + 2.0


async def test_story_start_and_line_through_interactions(server, e2e_settings):
    async with running_bot(e2e_settings(), server) as bot:
        iid, _ = await server.slash(fd.MEMBER_ID, "story", "start")
        await until(lambda: _has(server.callbacks, iid))
        assert "Continue the story" in server.callbacks[iid][0]["data"]["content"]
        iid, token = await server.slash(fd.MEMBER_ID, "story", "line", text="She opens the window.")
        await until(lambda: _has(server.webhook_messages, token), timeout=30)
        assert server.callbacks[iid][0]["type"] == 5  # deferred first: generation may take over 3 s
        content = server.webhook_messages[token][0]["content"]
        assert "She opens the window." in content and "**machine_director:** " in content
        # the turn is recorded once Discord returned the answer's message id: right after the answer, not with it
        for _ in range(100):
            story = await bot.services.storage.active_story(fd.CHANNEL_ID)
            if story.lines:
                break
            await asyncio.sleep(0.05)
        assert [ln.speaker for ln in story.lines] == ["human_director", "machine_director"]


async def test_retrain_refused_for_member_and_run_for_moderator(server, e2e_settings):
    async with running_bot(e2e_settings(), server) as bot:
        for _ in range(3):
            await post_once(bot)
        iid, _ = await server.slash(fd.MEMBER_ID, "retrain")
        await until(lambda: _has(server.callbacks, iid))
        refusal = server.callbacks[iid][0]
        assert refusal["type"] == 4 and refusal["data"]["flags"] & 64 and "moderators" in refusal["data"]["content"]

        iid, token = await server.slash(fd.MODERATOR_ID, "retrain")

        async def finished():
            edits = server.original_edits.get(token, [])
            return bool(edits) and "Adapter" in (edits[-1].get("content") or "")

        await until(finished, timeout=120)
        assert server.callbacks[iid][0]["type"] == 5
        final = server.original_edits[token][-1]["content"]
        assert "v0001" in final and "promoted and now serving" in final
        # the server's own lineage (issue 24): its first adapter serves it
        assert bot.services.communities.lineages.serving(f"g{fd.GUILD_ID}") == f"g{fd.GUILD_ID}/v0001"
        # the audit trail names who retrained; the run and the adapter's metadata do not
        (entry,) = await bot.services.storage.audit_entries()
        assert (entry["action"], entry["actor_id"], entry["guild_id"]) == ("/retrain", fd.MODERATOR_ID, fd.GUILD_ID)
        # the id as a number of its own, not digits inside a timestamp (1764095601922.1600347 holds "6003")
        holds_id = re.compile(rf"(?<![\d.]){fd.MODERATOR_ID}(?![\d.])").search
        assert not any(holds_id(r.reason) for r in await bot.services.storage.runs())
        assert not holds_id((bot.settings.adapters_dir / f"g{fd.GUILD_ID}" / "v0001" / "meta.json").read_text())


async def test_adapter_use_by_operator_refused_for_member(server, e2e_settings):
    from bot.engine.model import load_base
    from tests.support.adapters import make_adapter

    settings = e2e_settings()
    loaded = load_base(settings.model, settings.data_dir, device="cpu")
    from bot.adapters.lineages import Lineages

    community = f"g{fd.GUILD_ID}"  # the server's own lineage (issue 24)
    name = make_adapter(loaded, Lineages(settings.adapters_dir).store(community), 1)
    async with running_bot(settings, server) as bot:
        serving = bot.services.communities.lineages.serving
        iid, _ = await server.slash(fd.MEMBER_ID, "adapter", "use", name=name)
        await until(lambda: _has(server.callbacks, iid))
        assert "operators" in server.callbacks[iid][0]["data"]["content"]
        assert serving(community) == "base"
        iid, token = await server.slash(fd.OPERATOR_ID, "adapter", "use", name=name)
        await until(lambda: _has(server.webhook_messages, token))
        assert f"Now serving `{name}`" in server.webhook_messages[token][0]["content"]
        assert serving(community) == f"{community}/{name}"


async def test_catch_up_after_restart(server, e2e_settings):
    """A reaction added while the bot is down is stored after a restart."""
    settings = e2e_settings(KILROY_SETTLE_HOURS="12")  # catch-up covers posts still inside the settle window
    async with running_bot(settings, server) as bot:
        mid = await post_once(bot)
        await server.react(mid, fd.MEMBER_ID, "👍")
        await until(lambda: _votes_are(bot, mid, [(fd.MEMBER_ID, "👍")]))
    await server.react(mid, fd.OPERATOR_ID, "❤️", dispatch=False)  # while down
    await server.react(mid, fd.MEMBER_ID, "👍", add=False, dispatch=False)
    async with running_bot(settings, server) as bot:
        await until(lambda: _votes_are(bot, mid, [(fd.OPERATOR_ID, "❤️")]))


async def test_rate_limited_post_is_retried_and_lands_once(server, e2e_settings):
    server.rate_limit_next_posts = 1
    async with running_bot(e2e_settings(), server) as bot:
        mid = await post_once(bot)
    posts = [r for r in server.requests if r.method == "POST" and r.path == f"/channels/{fd.CHANNEL_ID}/messages"]
    assert len(posts) == 2  # one 429, one success
    assert len(server.posts_by_bot()) == 1 and int(server.posts_by_bot()[0]["id"]) == mid


async def _has(mapping, key) -> bool:
    await asyncio.sleep(0)
    return bool(mapping.get(key))


async def _votes_are(bot, mid, expected) -> bool:
    return (await votes(bot, mid))[0] == sorted(expected)


async def test_burst_of_reactions_is_stored_exactly(server, e2e_settings):
    """2,000 adds and removes on 50 posts from 200 members, injected as fast as the socket takes them."""
    from tests.support.burst import run_burst

    async with running_bot(e2e_settings(), server) as bot:
        result = await run_burst(bot, server, events=int(os.environ.get("BURST", 2000)), posts=50, members=200)
    assert result.actual == result.expected
    print(f"burst: {result.events_per_second:.0f} events/s, worst loop lag {result.worst_lag_ms:.1f} ms")


async def test_stats_uploads_a_plot(server, e2e_settings):
    """/stats answers through the webhook with a PNG attachment (multipart upload)."""
    async with running_bot(e2e_settings(), server) as bot:
        mid = await post_once(bot)
        await server.react(mid, fd.MEMBER_ID, "❤️")
        await until(lambda: _votes_are(bot, mid, [(fd.MEMBER_ID, "❤️")]))
        _, token = await server.slash(fd.MEMBER_ID, "stats")
        await until(lambda: _has(server.webhook_messages, token), timeout=30)
    body = next(r.body for r in server.requests if r.method == "POST" and r.path.endswith(token))
    assert body["_files"] and "1 post in 14 days" in body["content"]


async def test_commands_synced_only_when_changed(server, e2e_settings):
    """A restart with the same commands does not sync again (Discord limits command creation)."""
    from bot.app.bot import SYNC_MARKER

    settings = e2e_settings()

    def syncs():
        return sum(
            1 for r in server.requests if r.method == "PUT" and "/guilds/" in r.path and r.path.endswith("/commands")
        )

    async with running_bot(settings, server):
        pass
    async with running_bot(settings, server):
        pass
    assert syncs() == 1
    (settings.data_dir / SYNC_MARKER).unlink()  # what `kilroy run --sync` does
    async with running_bot(settings, server):
        pass
    assert syncs() == 2
