from unittest.mock import AsyncMock, MagicMock

import discord
import pytest

from bot.domain.safety import OutputFilter
from bot.engine.generator import Sample
from cogs.posting import Posting
from tests.support.discord_mocks import fake_bot
from tests.support.storage import number_of_posts, post_by_message


class ScriptedGenerator:
    """Returns the given texts in order, two per call (as compose_post asks)."""

    def __init__(self, texts):
        self.texts = list(texts)

    async def generate(self, n, **kw):
        out = []
        for _ in range(n):
            text = self.texts.pop(0) if self.texts else ""
            out.append(Sample(text, "", (0,), (5, 6, 0), "v0003", {"temperature": 1.0}))
        return out


def channel(can_send=True, message_id=777):
    ch = MagicMock(spec=discord.TextChannel)
    ch.guild = MagicMock(spec=discord.Guild, id=1)
    ch.permissions_for.return_value = discord.Permissions(send_messages=can_send)
    sent = MagicMock(spec=discord.Message, id=message_id)
    ch.send = AsyncMock(return_value=sent)
    return ch


@pytest.fixture
def make_cog(make_settings, storage):
    def make(texts, ch, **env):
        bot = fake_bot()
        bot.get_channel = MagicMock(return_value=ch)
        settings = make_settings(KILROY_POST_CHANNEL_IDS="500", **env)
        return Posting(bot, settings=settings, storage=storage, generator=ScriptedGenerator(texts))

    return make


async def test_post_is_sent_and_recorded_with_ids_and_adapter(make_cog, storage):
    ch = channel()
    cog = make_cog(["hello world"], ch)
    await cog.post_to(500)
    assert sent(ch) == ["hello world"]
    post = await post_by_message(storage, 777)
    assert post.text == "hello world" and post.adapter == "v0003" and post.completion_ids == (5, 6, 0)
    assert post.channel_id == 500 and post.guild_id == 1 and post.params == {"temperature": 1.0}


async def test_empty_and_blocklisted_texts_never_posted(make_cog, storage):
    ch = channel()
    cog = make_cog(["   ", "buy crypto now", "a fine post"], ch, KILROY_BLOCKLIST="crypto")
    await cog.post_to(500)
    assert sent(ch) == ["a fine post"]


async def test_gives_up_after_retries_without_posting(make_cog, storage):
    ch = channel()
    cog = make_cog([""] * 10, ch)
    assert await cog.post_to(500) is None
    ch.send.assert_not_awaited()
    assert await number_of_posts(storage) == 0


async def test_channel_without_permission_skipped_with_warning(make_cog, storage, caplog):
    ch = channel(can_send=False)
    cog = make_cog(["hello"], ch)
    assert await cog.post_to(500) is None
    ch.send.assert_not_awaited()
    assert "no permission" in caplog.text


@pytest.mark.parametrize(
    ("text", "ok"),
    [("hello", True), ("", False), ("  \n", False), ("I love Crypto!", False), ("cryptography rocks", True)],
)
def test_the_output_filter_refuses_empty_and_blocklisted_text(text, ok):
    """A post needs visible text and no blocklisted word (a word, not a substring)."""
    assert OutputFilter(("crypto",)).check(text).ok is ok


async def test_best_of_n_sends_the_reward_models_favourite_and_records_every_candidate(make_cog, storage):
    """With a nightly reward model on disk, one batch of KILROY_BEST_OF samples; the favourite goes out."""
    from bot.training.reward_model import REWARD_MODEL_FILE, RewardModel, save_reward_model

    ch = channel()
    texts = ["plain words", "a cat post", "buy crypto cat", "more words"]
    cog = make_cog(texts, ch, KILROY_BEST_OF="4", KILROY_BLOCKLIST="crypto")
    model = RewardModel(bias=1.0, weights={"cat": 1.0, "crypto": 5.0}, signal=0.2, posts=64, mean_score=1.0)
    save_reward_model(model, cog.settings.adapters_dir / REWARD_MODEL_FILE)
    await cog.post_to(500)
    assert sent(ch) == ["a cat post"]  # "buy crypto cat" scores higher but the filter refuses it
    post = await post_by_message(storage, 777)
    got = (await storage.post_candidates([post.id]))[post.id]
    assert [c.text for c in got] == texts and [c.chosen for c in got] == [False, True, False, False]
    assert [c.predicted for c in got] == [1.0, 2.0, 7.0, 1.0] and not got[2].postable


async def test_best_of_n_novelty_reads_the_channels_recent_posts(make_cog, storage):
    """With KILROY_BEST_OF_NOVELTY the second post passes over a candidate that repeats the first one's phrases."""
    from bot.training.reward_model import REWARD_MODEL_FILE, RewardModel, save_reward_model

    ch = channel()
    texts = ["the cat sat on the mat", "plain words", "the cat sat on the mat again", "a dog ran"]
    cog = make_cog(texts, ch, KILROY_BEST_OF="2", KILROY_BEST_OF_NOVELTY="2")
    model = RewardModel(bias=1.0, weights={"cat": 1.0}, signal=0.2, posts=64, mean_score=1.0)
    save_reward_model(model, cog.settings.adapters_dir / REWARD_MODEL_FILE)
    await cog.post_to(500)
    ch.send.return_value.id = 778  # the second message
    await cog.post_to(500)
    assert sent(ch) == ["the cat sat on the mat", "a dog ran"]


def sent(ch) -> list[str]:
    """What was sent; every send must carry AllowedMentions.none()."""
    for call in ch.send.await_args_list:
        assert call.kwargs["allowed_mentions"].to_dict() == {"parse": []}
    return [call.args[0] for call in ch.send.await_args_list]


async def test_invites_and_urls_resampled_mentions_neutralised(make_cog, storage):
    """An invite link or a URL is never sent (resampled, counted); a generated @everyone goes out neutralised."""
    ch = channel()
    cog = make_cog(["join discord.gg/abc", "see www.spam.example", "hello @everyone and <@123>"], ch)
    await cog.post_to(500)
    assert sent(ch) == ["hello @\u200beveryone and <@\u200b123>"]
    assert dict(cog.output_filter.resampled) == {"invite": 1, "url": 1}


async def test_skipped_post_is_counted(make_cog, storage):
    ch = channel()
    cog = make_cog(["discord.gg/x"] * 10, ch)
    assert await cog.post_to(500) is None
    assert cog.output_filter.skipped == 1 and "1 skipped" in cog.output_filter.summary()


async def test_channel_of_another_server_never_posted(make_cog, storage, caplog):
    """A post channel in a server outside KILROY_GUILD_IDS is skipped."""
    ch = channel()
    cog = make_cog(["hello"], ch, KILROY_GUILD_IDS="77")
    assert await cog.post_to(500) is None
    ch.send.assert_not_awaited()


async def test_a_discord_server_error_does_not_stop_the_schedule(make_cog, storage, monkeypatch, caplog):
    """tasks.loop ends for good on an error it does not retry: a 5xx on one round is logged, the next round posts."""
    ch = channel()
    response = MagicMock(status=503, reason="Service Unavailable")
    ch.send = AsyncMock(side_effect=[discord.DiscordServerError(response, "boom"), MagicMock(id=778)])
    cog = make_cog(["hello world", "hello world", "hello again", "hello again"], ch, KILROY_POST_INTERVAL_MINUTES="1")
    monkeypatch.setattr("cogs.posting.random.uniform", lambda a, b: 0.0)
    await cog.post_everywhere()  # must not raise
    assert "failed" in caplog.text
    await cog.post_everywhere()
    assert await post_by_message(storage, 778) is not None


async def test_a_posting_rounds_json_log_line_names_guild_channel_and_post(make_cog, storage):
    """KILROY_LOG_FORMAT=json: the line a post logs carries its ids (the log context, bot/logs.py); no member id."""
    import io
    import json
    import logging

    from bot.logs import make_handler

    stream = io.StringIO()
    handler = make_handler("json", stream)
    logger = logging.getLogger("cogs.posting")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    try:
        ch = channel(message_id=4242)
        await make_cog(["hello world"], ch).post_to(500)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)
    post = await post_by_message(storage, 4242)
    line = json.loads(stream.getvalue().splitlines()[-1])
    assert line["message"].startswith("posted")
    assert (line["guild"], line["channel"], line["post"], line["message_id"]) == (1, 500, post.id, 4242)
    assert line["adapter"] == "v0003" and not any("member" in k or "user" in k for k in line)


class MixedGenerator:
    """Records every batch; each row's text names the adapter that wrote it."""

    active = "base"

    def __init__(self):
        self.batches = []

    async def generate_mixed(self, requests, **kw):
        self.batches.append([(r.adapter, r.n) for r in requests])
        return [
            [Sample(f"written by {r.adapter} row {i}", "", (0,), (5, 6, 0), r.adapter, {}) for i in range(r.n)]
            for r in requests
        ]

    async def generate(self, n, **kw):  # pragma: no cover - a round of several posts must not come here
        raise AssertionError("posts that fall due together go in one mixed batch")


class TwoCommunities:
    """Each server is served by its own lineage's reference; no trials."""

    class lineages:
        @staticmethod
        def communities():
            return []

        @staticmethod
        def reward_model_path(community):
            from pathlib import Path

            return Path("/nonexistent") / community / "reward_model.json"  # no reward model yet: plain draws

    async def reference(self, community):
        return f"{community}/v0001"

    def trials(self, community):
        return None


async def test_posts_due_together_are_written_in_one_mixed_batch_each_by_its_server(
    make_settings, storage, monkeypatch
):
    """Two servers' channels fall due in one round: one generate_mixed call, each row by its own server's adapter,
    and each post records the reference that wrote it."""
    chans = {500: channel(message_id=801), 600: channel(message_id=802)}
    chans[600].guild = MagicMock(spec=discord.Guild, id=2)
    bot = fake_bot()
    bot.get_channel = MagicMock(side_effect=chans.get)
    generator = MixedGenerator()
    settings = make_settings(KILROY_POST_CHANNEL_IDS="500,600")
    cog = Posting(bot, settings=settings, storage=storage, generator=generator, communities=TwoCommunities())
    monkeypatch.setattr("cogs.posting.random.uniform", lambda a, b: 0.0)
    await cog.post_everywhere()
    assert len(generator.batches) == 1
    assert [adapter for adapter, _ in generator.batches[0]] == ["g1/v0001", "g2/v0001"]
    first, second = await post_by_message(storage, 801), await post_by_message(storage, 802)
    assert (first.adapter, first.guild_id) == ("g1/v0001", 1)
    assert (second.adapter, second.guild_id) == ("g2/v0001", 2)
    assert first.text.startswith("written by g1/v0001") and second.text.startswith("written by g2/v0001")
