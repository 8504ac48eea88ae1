from unittest.mock import AsyncMock, MagicMock

import discord
import pytest

from bot.storage import NewPost
from cogs.engagement import Engagement
from tests.support.discord_mocks import fake_bot, member, reaction_payload
from tests.support.storage import mark_trained


@pytest.fixture
async def cog(storage, make_settings):
    await storage.add_post(NewPost(channel_id=500, text="hello", adapter="base", created_at=1.0, message_id=1))
    return Engagement(fake_bot(999), settings=make_settings(), storage=storage, clock=lambda: 10.0)


async def votes(storage):
    (rec,) = await storage.post_records()
    return sorted((v.member_id, v.emoji) for v in rec.votes)


async def test_reaction_on_bot_post_stored_once(cog, storage):
    """The same reaction event twice is one vote."""
    await cog.on_raw_reaction_add(reaction_payload(1, 42))
    await cog.on_raw_reaction_add(reaction_payload(1, 42))
    assert await votes(storage) == [(42, "❤️")]


async def test_removal_cancels(cog, storage):
    await cog.on_raw_reaction_add(reaction_payload(1, 42))
    await cog.on_raw_reaction_remove(reaction_payload(1, 42, event="REACTION_REMOVE"))
    assert await votes(storage) == []


async def test_bot_reaction_ignored(cog, storage):
    """Another bot's reaction never counts, and neither does Kilroy's own."""
    await cog.on_raw_reaction_add(reaction_payload(1, 77, bot=True))
    await cog.on_raw_reaction_add(reaction_payload(1, 999))
    assert await votes(storage) == []


async def test_reaction_on_someone_elses_message_ignored(cog, storage):
    await cog.on_raw_reaction_add(reaction_payload(1, 42, author_id=12345))
    assert await votes(storage) == []


async def test_reply_to_bot_post_stored(cog, storage):
    msg = MagicMock(spec=discord.Message)
    msg.id, msg.guild, msg.content = 50, MagicMock(), "nice"
    msg.author = member(42)
    msg.type = discord.MessageType.reply
    msg.reference = MagicMock(spec=discord.MessageReference, message_id=1)
    await cog.on_message(msg)
    await cog.on_message(msg)  # replayed event
    msg2 = MagicMock(spec=discord.Message)
    msg2.id, msg2.guild, msg2.content, msg2.author = 51, MagicMock(), "beep", member(77, bot=True)
    msg2.type = discord.MessageType.reply
    msg2.reference = MagicMock(spec=discord.MessageReference, message_id=1)
    await cog.on_message(msg2)
    (rec,) = await storage.post_records()
    assert [r.member_id for r in rec.replies] == [42]


def catch_up_cog(storage, settings, *, normal, burst=()):
    """An Engagement cog whose bot fetches post 1 with one ❤️ reaction: `normal` and `burst` are the members the
    API lists for each reaction type (and, like the API, normal ones unless asked for the other)."""

    def users(*, type=None, **_):
        async def gen():
            for p in burst if type is discord.ReactionType.burst else normal:
                yield p

        return gen()

    reaction = MagicMock(spec=discord.Reaction)
    reaction.emoji, reaction.burst_count, reaction.users = "❤️", len(burst), users
    message = MagicMock(spec=discord.Message)
    message.reactions = [reaction]
    channel = MagicMock(spec=discord.TextChannel)
    channel.fetch_message = AsyncMock(return_value=message)
    bot = fake_bot(999)
    bot.get_channel = MagicMock(return_value=channel)
    return Engagement(bot, settings=settings, storage=storage, clock=lambda: 2000.0)


async def test_catch_up_reconciles_missed_reaction(storage, make_settings):
    """Reactions added while the bot was down are stored at start; stale ones are dropped."""
    await storage.add_post(NewPost(channel_id=500, text="hello", adapter="base", created_at=1000.0, message_id=1))
    await storage.add_vote(1, 5, "👍", at=1000.0)  # removed while we were offline
    cog = catch_up_cog(storage, make_settings(), normal=[member(42), member(77, bot=True), member(999)])
    assert await cog.catch_up() == 2
    assert await votes(storage) == [(42, "❤️")]


async def test_forget_me_deletes_records_and_opt_out_holds(cog, storage, make_settings):
    """/forget-me deletes a member's votes (others' stay) and answers truthfully with counts; afterwards their live
    reactions and the catch-up's view of Discord's reactions are ignored."""
    from cogs.privacy import Privacy
    from tests.support.discord_mocks import interaction, texts

    await cog.on_raw_reaction_add(reaction_payload(1, 42))
    await cog.on_raw_reaction_add(reaction_payload(1, 43))
    privacy = Privacy(settings=make_settings(), storage=storage)
    i = interaction(member(42))
    await privacy.forget_me.callback(privacy, i)
    assert await votes(storage) == [(43, "❤️")]
    assert i.response.defer.call_args.kwargs["ephemeral"] is True  # "thinking" privately, before the database
    answer = texts(i.followup.send)[0]
    assert "1 votes" in answer and "1 reaction events" in answer and "never stored your words" not in answer
    assert i.followup.send.call_args.kwargs["ephemeral"] is True
    await cog.on_raw_reaction_add(reaction_payload(1, 42, "👍"))  # live event after opting out
    assert await storage.reconcile_votes(1, [(42, "❤️"), (43, "❤️")], at=20.0) == 0  # catch-up sees their reaction
    assert await votes(storage) == [(43, "❤️")]


async def test_retention_prunes_and_vacuums(storage, make_settings):
    """The daily retention run deletes raw data of trained posts older than KILROY_RETENTION_DAYS."""
    from cogs.privacy import Privacy

    await storage.add_post(NewPost(channel_id=500, text="old", adapter="base", created_at=1.0, message_id=2))
    await storage.add_vote(2, 42, "❤️", at=1.0)
    await mark_trained(storage, [await storage.post_id_by_message(2)], at=2.0, run_id=None)
    privacy = Privacy(settings=make_settings(KILROY_RETENTION_DAYS="1"), storage=storage, clock=lambda: 3 * 86400.0)
    assert await privacy.run_retention() == {"reaction_events": 1, "replies": 0}
    assert await privacy.run_retention() == {"reaction_events": 0, "replies": 0}


def reply_message(message_id: int, author_id: int, to: int = 1, *, kind=discord.MessageType.reply, forward=False):
    msg = MagicMock(spec=discord.Message)
    msg.id, msg.guild, msg.content, msg.type = message_id, MagicMock(), "a message", kind
    msg.guild.id = 1
    msg.author = member(author_id)
    ref_type = discord.MessageReferenceType.forward if forward else discord.MessageReferenceType.default
    msg.reference = MagicMock(spec=discord.MessageReference, message_id=to, type=ref_type)
    return msg


async def replies(storage):
    (rec,) = await storage.post_records()
    return sorted(r.member_id for r in rec.replies)


async def test_a_pin_notice_or_a_forward_is_not_a_reply(cog, storage):
    """Pinning Kilroy's post makes Discord post a notice that references it, from the moderator; forwarding it quotes
    it elsewhere. Neither answers the post, so neither adds a reply to its score."""
    await cog.on_message(reply_message(60, 42, kind=discord.MessageType.pins_add))
    await cog.on_message(reply_message(61, 43, kind=discord.MessageType.default, forward=True))
    await cog.on_message(reply_message(62, 44, kind=discord.MessageType.thread_starter_message))
    assert await replies(storage) == []
    await cog.on_message(reply_message(63, 45))
    assert await replies(storage) == [45]


async def test_a_purge_removes_the_replies_it_deleted(cog, storage):
    for mid, author in ((60, 42), (61, 43), (62, 44)):
        await cog.on_message(reply_message(mid, author))
    payload = MagicMock(spec=discord.RawBulkMessageDeleteEvent)
    payload.message_ids, payload.guild_id, payload.channel_id = {60, 62, 12345}, 1, 500
    await cog.on_raw_bulk_message_delete(payload)
    assert await replies(storage) == [43]


def clear_payload(emoji: str | None = None):
    p = MagicMock(spec=discord.RawReactionClearEmojiEvent if emoji else discord.RawReactionClearEvent)
    p.message_id, p.guild_id, p.channel_id = 1, 1, 500
    if emoji:
        p.emoji = discord.PartialEmoji(name=emoji)
    return p


async def test_removing_all_reactions_removes_the_votes(cog, storage):
    """A moderator's "remove all reactions" is one event, not a removal per member: the votes must go with it."""
    for user, emoji in ((42, "❤️"), (43, "👍"), (44, "❤️")):
        await cog.on_raw_reaction_add(reaction_payload(1, user, emoji))
    await cog.on_raw_reaction_clear_emoji(clear_payload("❤️"))
    assert await votes(storage) == [(43, "👍")]
    await cog.on_raw_reaction_clear(clear_payload())
    assert await votes(storage) == []
    await cog.on_raw_reaction_add(reaction_payload(1, 42))  # reacting again afterwards counts again
    assert await votes(storage) == [(42, "❤️")]


async def test_a_clear_is_ordered_with_the_reactions_around_it(cog, storage):
    """Reactions queued before a clear are cleared with it; those after it stand (one batch of the writer)."""
    import asyncio

    await asyncio.gather(
        cog.on_raw_reaction_add(reaction_payload(1, 42)),
        cog.on_raw_reaction_add(reaction_payload(1, 43)),
        cog.on_raw_reaction_clear(clear_payload()),
        cog.on_raw_reaction_add(reaction_payload(1, 44)),
    )
    assert await votes(storage) == [(44, "❤️")]


async def test_a_known_bots_removal_is_not_logged_as_a_members(cog, storage):
    cog.bot.get_user = MagicMock(return_value=member(77, bot=True))
    await cog.on_raw_reaction_add(reaction_payload(1, 77, bot=True))
    await cog.on_raw_reaction_remove(reaction_payload(1, 77, event="REACTION_REMOVE"))
    rows = await storage.db.execute_fetchall("SELECT action, is_bot FROM reaction_events WHERE member_id = 77")
    assert rows and all(is_bot == 1 for _, is_bot in rows)


async def test_catch_up_counts_super_reactions(storage, make_settings):
    """The API lists a message's normal reactions unless asked for super ones; live events count both."""
    await storage.add_post(NewPost(channel_id=500, text="hello", adapter="base", created_at=1000.0, message_id=1))
    await storage.add_vote(1, 43, "❤️", at=1000.0)  # a super reaction, stored live
    cog = catch_up_cog(storage, make_settings(), normal=[member(42)], burst=[member(43)])
    assert await cog.catch_up() == 1
    assert await votes(storage) == [(42, "❤️"), (43, "❤️")]


async def test_every_new_gateway_session_catches_up(cog):
    """After an outage that could not be resumed, Discord does not replay the missed events: catch up again."""
    import asyncio

    runs = []

    async def catch_up():
        runs.append(1)
        return 0

    cog.catch_up = catch_up
    await cog.cog_load()
    await cog.on_ready()  # the first READY: the start-up catch-up is already under way, no second one
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert len(runs) == 1
    await cog.on_ready()  # a new session later
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert len(runs) == 2


def custom_payload(user_id: int, *, animated: bool, event: str = "REACTION_ADD", name: str = "kilroy"):
    p = reaction_payload(1, user_id, event=event)
    p.emoji = discord.PartialEmoji(name=name, id=7, animated=animated)
    return p


async def test_an_animated_custom_emoji_vote_can_be_taken_back(cog, storage):
    """Discord has sent an animated custom emoji with the flag on the add and without it on the removal (until 2023;
    and the flag was reported unreliable on adds): both must name the same vote, or it is never taken back."""
    await cog.on_raw_reaction_add(custom_payload(42, animated=True))
    assert await votes(storage) == [(42, "<:kilroy:7>")]
    await cog.on_raw_reaction_remove(custom_payload(42, animated=False, event="REACTION_REMOVE"))
    assert await votes(storage) == []


def test_custom_emoji_weights_match_whatever_flag_the_operator_wrote(make_settings):
    settings = make_settings(KILROY_EMOJI_WEIGHTS="<a:kilroy:7>=3,👎=-1")
    assert settings.scoring.weight("<:kilroy:7>") == 3.0
