"""PostgreSQL with several processes (shards): a /forget-me in one holds for the writes of every other one, even
one that loaded its opted-out set before the forget and races it."""

import asyncio

from bot.storage import NewPost, Storage
from tests.storage.test_forget_races import holding

M = 626262626262626262


async def test_a_forget_in_one_process_holds_for_the_writes_of_another(postgres_server):
    url = postgres_server.new_database()
    async with Storage.open(url) as a, Storage.open(url) as b:  # two processes' storages on one database
        await a.add_post(NewPost(1, "post", "base", 1.0, message_id=1, guild_id=9))
        await a.forget_member(M, at=2.0)  # b loaded its set before: it does not know yet
        assert not await b.add_vote(1, M, "❤️", at=3.0)
        assert not await b.add_reply(50, 1, M, at=3.0)
        assert await b.reconcile_votes(1, [(M, "❤️")], at=3.0) == 0
        await b.add_audit("/retrain", actor_id=M, guild_id=9, detail=f"by {M}", at=3.0)
        await b.start_story(5, instruction="i", opening="their words", started_by=M, at=3.0)
        assert await holding(b, [str(M), "their words", b.member_label(M)]) == []


async def test_a_forget_racing_another_processes_burst_leaves_nothing(postgres_server):
    url = postgres_server.new_database()
    async with Storage.open(url) as a, Storage.open(url) as b:
        await a.add_post(NewPost(1, "post", "base", 1.0, message_id=1, guild_id=9))
        for round_ in range(20):
            m = M + round_
            burst = [b.add_vote(1, m, e, at=float(i)) for i, e in enumerate("abcdefghij")]
            await asyncio.gather(*burst[:5], a.forget_member(m, at=5.0), *burst[5:])
        assert await holding(b, [str(M + r) for r in range(20)]) == []
        assert await b.add_vote(1, 7, "👍", at=9.0)  # others still count
