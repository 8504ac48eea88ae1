"""End-to-end, issue 24: the real `kilroy run` (a subprocess) against the fake Discord with two servers, A and B.
(The waits are upper bounds for a loaded machine: each returns as soon as its condition holds; ~3.5 min idle.)

Each server is served by its own lineage and every post records the adapter that wrote it; an operator's
`/adapter use` in B changes what B is served and nothing of A's; a moderator's `/retrain` in A trains A's lineage on
A's posts only; a member's `/forget-me` removes their reactions in both servers.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bot.adapters.lineages import Lineages
from tests.e2e.test_service import _async, free_port, kilroy_run, wait_for, write_env
from tests.support import fake_discord as fd
from tests.support.adapters import make_adapter
from tests.support.data import OPEN_GATE

pytestmark = pytest.mark.slow

A, B = f"g{fd.GUILD_ID}", f"g{fd.GUILD2_ID}"


def rows(db: Path, sql: str, *args) -> list[tuple]:
    if not db.exists():
        return []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute(sql, args).fetchall()
    except sqlite3.OperationalError:  # not migrated yet
        return []
    finally:
        con.close()


def posts_of(db: Path, guild: int) -> list[tuple]:
    """(message id, adapter, trained_at) of a server's posts, oldest first."""
    return rows(db, "SELECT message_id, adapter, trained_at FROM posts WHERE guild_id = ? ORDER BY id", guild)


async def test_two_servers_each_learn_and_are_served_their_own(server, tiny_settings, tmp_path):
    settings = tiny_settings()
    from bot.engine.model import load_base

    loaded = load_base(settings.model, settings.data_dir, device="cpu")
    lineages = Lineages(tmp_path / "adapters")
    make_adapter(loaded, lineages.store(A), 1)
    for seed in (2, 3):
        make_adapter(loaded, lineages.store(B), seed)
    lineages.store(A).set_current("v0001")
    lineages.store(B).set_current("v0001")
    server.members2[fd.OPERATOR_ID] = fd.member(fd.OPERATOR_ID, "operator")  # an operator in both servers
    env_file = write_env(
        tmp_path,
        Path(settings.model.name),
        free_port(),
        KILROY_GUILD_IDS=f"{fd.GUILD_ID},{fd.GUILD2_ID}",
        KILROY_POST_CHANNEL_IDS=f"{fd.CHANNEL_ID},{fd.CHANNEL2_ID}",
        KILROY_POST_INTERVAL_MINUTES="1",
        KILROY_MODERATOR_ROLE_IDS=str(fd.MODERATOR_ROLE),
        KILROY_OPERATOR_USER_IDS=str(fd.OPERATOR_ID),
        KILROY_SETTLE_HOURS="0",
        KILROY_MIN_TRAIN_POSTS="1",
        KILROY_COMMUNITY_MIN_POSTS="0",
        KILROY_EPOCHS="1",
        KILROY_REWARD_MAX_P="1",
        KILROY_GATE_SAMPLES="8",
        KILROY_AB_SHARE="0",
        **OPEN_GATE,
    )
    db = tmp_path / "data" / "kilroy.db"
    async with kilroy_run(env_file, server):
        # the first round: each server's post is written by its own adapter, recorded on the post
        await wait_for(
            lambda: _async(bool(posts_of(db, fd.GUILD_ID)) and bool(posts_of(db, fd.GUILD2_ID))), 420, "a post in each"
        )
        assert [a for _, a, _ in posts_of(db, fd.GUILD_ID)] == [f"{A}/v0001"]
        assert [a for _, a, _ in posts_of(db, fd.GUILD2_ID)] == [f"{B}/v0001"]

        # an operator switches B to another of B's versions
        _, token = await server.slash(
            fd.OPERATOR_ID, "adapter", "use", guild_id=fd.GUILD2_ID, channel_id=fd.CHANNEL2_ID, name="v0002"
        )
        await wait_for(lambda: _async(bool(server.webhook_messages.get(token))), 120, "/adapter use answered")
        assert "Now serving `v0002`" in server.webhook_messages[token][0]["content"]

        # the next round: B's post by its new adapter, A's still by its own
        await wait_for(
            lambda: _async(len(posts_of(db, fd.GUILD_ID)) >= 2 and len(posts_of(db, fd.GUILD2_ID)) >= 2),
            240,
            "a second round of posts",
        )
        assert posts_of(db, fd.GUILD_ID)[1][1] == f"{A}/v0001"
        assert posts_of(db, fd.GUILD2_ID)[1][1] == f"{B}/v0002"

        # a member reacts in both servers
        a_post, b_post = posts_of(db, fd.GUILD_ID)[0][0], posts_of(db, fd.GUILD2_ID)[0][0]
        for mid in (a_post, b_post):
            await server.react(mid, fd.MEMBER_ID, "❤️")
        member_votes = "SELECT COUNT(*) FROM votes WHERE member_id = ?"
        await wait_for(lambda: _async(rows(db, member_votes, fd.MEMBER_ID) == [(2,)]), 30, "votes in both servers")

        # a moderator's /retrain in A trains A's lineage on A's posts, and nothing of B's
        _, token = await server.slash(fd.MODERATOR_ID, "retrain")

        async def retrained():
            edits = server.original_edits.get(token, [])
            return bool(edits) and "Adapter" in (edits[-1].get("content") or "")

        await wait_for(retrained, 420, "/retrain in A finished")
        final = server.original_edits[token][-1]["content"]
        assert "v0002" in final and "promoted and now serving" in final, final
        assert {c for (c,) in rows(db, "SELECT community FROM training_runs")} == {A}
        assert all(t is not None for *_, t in posts_of(db, fd.GUILD_ID)[:2])  # A's settled posts: trained
        assert all(t is None for *_, t in posts_of(db, fd.GUILD2_ID))  # B's: untouched
        assert (tmp_path / "adapters" / A / "v0002").is_dir() and not (tmp_path / "adapters" / B / "v0003").exists()
        assert Lineages(tmp_path / "adapters").serving(A) == f"{A}/v0002"
        assert Lineages(tmp_path / "adapters").serving(B) == f"{B}/v0002"
        iid, _ = await server.slash(fd.OPERATOR_ID, "adapter", "list")  # what A is served now, said in A
        await wait_for(lambda: _async(bool(server.callbacks.get(iid))), 30, "/adapter list answered")
        assert f"`{A}` is served by `{A}/v0002`" in server.callbacks[iid][0]["data"]["content"]

        # the member asks to be forgotten in A: their reactions go in both servers
        _, token = await server.slash(fd.MEMBER_ID, "forget-me")
        await wait_for(lambda: _async(bool(server.webhook_messages.get(token))), 60, "/forget-me answered")
        await wait_for(lambda: _async(rows(db, member_votes, fd.MEMBER_ID) == [(0,)]), 30, "votes gone everywhere")
    assert rows(db, member_votes, fd.MEMBER_ID) == [(0,)]
