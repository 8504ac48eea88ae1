"""End-to-end A/B trial: /retrain puts the candidate on trial, posts of both arms go out and are recorded, the
community's reactions decide, and a restart in the middle keeps the trial and its posts."""

from __future__ import annotations

import pytest

from tests.e2e.test_bot import _has
from tests.support import fake_discord as fd
from tests.support.e2e import running_bot, until
from tests.support.storage import post_by_message

pytestmark = pytest.mark.slow

FANS = [7_100_000 + i for i in range(6)]  # members who react to every candidate post
G = f"g{fd.GUILD_ID}"  # the server's community: its own lineage, its own trial (issue 24)


async def _post_and_react(bot, server, n: int) -> list[str]:
    """Post `n` times through the posting cog; members react to the candidate's posts only; return the arms."""
    for uid in FANS:
        server.members.setdefault(uid, fd.member(uid, f"fan{uid}"))
    arms = []
    for _ in range(n):
        message = await bot.get_cog("Posting").post_to(fd.CHANNEL_ID)
        assert message is not None
        post = await post_by_message(bot.services.storage, message.id)
        arms.append(post.arm)
        if post.arm == "candidate":
            for uid in FANS:
                await server.react(message.id, uid, "❤️")

            async def stored(mid=message.id, trial_id=post.trial_id):
                recs = await bot.services.storage.post_records(trial_id=trial_id)
                return any(r.post.message_id == mid and len(r.votes) == len(FANS) for r in recs)

            await until(stored)
    return arms


async def test_trial_from_retrain_to_promotion_across_a_restart(server, e2e_settings):
    settings = e2e_settings(
        KILROY_AB_SHARE="0.5", KILROY_AB_MODE="trial", KILROY_AB_ALPHA="0.05", KILROY_LOG_CHANNEL_ID=str(fd.CHANNEL_ID)
    )
    async with running_bot(settings, server) as bot:
        for _ in range(3):  # settled posts for the night to train on (and the trial's frozen baseline)
            await bot.get_cog("Posting").post_to(fd.CHANNEL_ID)
        _, token = await server.slash(fd.MODERATOR_ID, "retrain")

        async def finished():
            edits = server.original_edits.get(token, [])
            return bool(edits) and "Adapter" in (edits[-1].get("content") or "")

        await until(finished, timeout=120)
        assert "A/B trial" in server.original_edits[token][-1]["content"]
        trial = await bot.services.storage.active_trial(G)
        assert trial is not None and trial.candidate == f"{G}/v0001" and trial.incumbent == "base"
        assert bot.services.communities.lineages.serving(G) == "base"
        assert any("A/B trial #1 started" in m["content"] for m in server.posts_by_bot())
        first = await _post_and_react(bot, server, 8)

    # restart mid-trial: the trial, its posts and their arms are still there, and the coin goes on where it was
    async with running_bot(settings, server) as bot:
        resumed = await bot.services.storage.active_trial(G)
        assert resumed is not None and resumed.id == trial.id
        assert (
            bot.services.generator.is_resident(f"{G}/v0001") and bot.services.communities.lineages.serving(G) == "base"
        )
        counts = await bot.services.storage.trial_post_counts(trial.id)
        assert sum(counts.values()) == 8
        second = await _post_and_react(bot, server, 40)
        arms = first + second
        assert {"candidate", "incumbent"} <= set(arms)
        from bot.trials.sequential import assign_arm

        assert arms == [assign_arm(trial.seed, i, 0.5) for i in range(len(arms))]  # the recorded coin, no re-roll

        # the operator's view acts on the verdict the settled reactions reached: promotion, through the same path
        _, token = await server.slash(fd.OPERATOR_ID, "adapter", "trial")
        await until(lambda: _has(server.webhook_messages, token), timeout=30)
        shown = server.webhook_messages[token][0]["content"]
        assert "promoted" in shown, shown
        ended = await bot.services.storage.get_trial(trial.id)
        assert ended.verdict == "promote" and ended.decided_by == "test"
        assert bot.services.communities.lineages.serving(G) == f"{G}/v0001"
        assert any("A/B trial #1 ended" in m["content"] for m in server.posts_by_bot())
        (run,) = [r for r in await bot.services.storage.runs() if r.adapter == "v0001"]
        assert run.stage == "promoted"
        # after the verdict, posts carry no arm
        message = await bot.get_cog("Posting").post_to(fd.CHANNEL_ID)
        assert (await post_by_message(bot.services.storage, message.id)).arm is None


async def test_trial_stop_keeps_the_incumbent(server, e2e_settings):
    """`/adapter trial stop` by an operator ends the trial, recorded with who did it; the incumbent keeps serving."""
    settings = e2e_settings(KILROY_AB_SHARE="0.5", KILROY_AB_MODE="trial")
    async with running_bot(settings, server) as bot:
        for _ in range(3):
            await bot.get_cog("Posting").post_to(fd.CHANNEL_ID)
        await bot.services.communities.runner(G).run("test")
        trial = await bot.services.storage.active_trial(G)
        assert trial is not None
        iid, _ = await server.slash(fd.MEMBER_ID, "adapter", "trial", action="stop")
        await until(lambda: _has(server.callbacks, iid))
        assert "operators" in server.callbacks[iid][0]["data"]["content"]
        _, token = await server.slash(fd.OPERATOR_ID, "adapter", "trial", action="stop")
        await until(lambda: _has(server.webhook_messages, token), timeout=30)
        assert "stopped" in server.webhook_messages[token][0]["content"]
        ended = await bot.services.storage.get_trial(trial.id)
        # the operator is stored as their label (a keyed hash), never the id (issue 23, item 4)
        assert ended.verdict == "stopped" and ended.decided_by == bot.services.storage.member_label(fd.OPERATOR_ID)
        assert bot.services.communities.lineages.serving(G) == "base"
