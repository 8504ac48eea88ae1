"""End-to-end on a 4-bit base: the real bot and the real training worker, both holding the tiny model in 4-bit NF4
on CPU, against the fake Discord."""

from __future__ import annotations

import pytest

from tests.e2e.test_bot import _has, post_once
from tests.support import fake_discord as fd
from tests.support.e2e import running_bot, until
from tests.support.storage import post_by_message

pytestmark = pytest.mark.slow


async def test_a_night_on_4bit_posts_retrains_swaps_and_rolls_back(server, e2e_settings):
    """Posts are sampled on the 4-bit model; /retrain trains in the worker on a fresh 4-bit load, the gate passes,
    the new adapter is hot-swapped in and writes the next post; a rollback serves the base again."""
    settings = e2e_settings(KILROY_QUANTIZATION="4bit")
    async with running_bot(settings, server) as bot:
        assert bot.services.generator.loaded.quantization == "4bit"
        for _ in range(3):
            await post_once(bot)
        iid, token = await server.slash(fd.MODERATOR_ID, "retrain")

        async def finished():
            edits = server.original_edits.get(token, [])
            return bool(edits) and "Adapter" in (edits[-1].get("content") or "")

        await until(finished, timeout=120)
        assert server.callbacks[iid][0]["type"] == 5  # deferred: training takes longer than 3 s
        assert "v0001" in server.original_edits[token][-1]["content"]
        assert "promoted and now serving" in server.original_edits[token][-1]["content"]
        g = f"g{fd.GUILD_ID}"  # the server's own lineage (issue 24)
        assert bot.services.communities.lineages.serving(g) == f"{g}/v0001"
        post = await post_by_message(bot.services.storage, await post_once(bot))
        assert post.adapter == f"{g}/v0001" and post.completion_ids

        _, token = await server.slash(fd.OPERATOR_ID, "adapter", "rollback")
        await until(lambda: _has(server.webhook_messages, token), timeout=30)
        assert bot.services.communities.lineages.serving(g) == "base"
