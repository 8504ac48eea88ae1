from bot.engine.compose import Candidate
from bot.storage import NewPost


async def test_candidates_round_trip_in_draw_order_and_replays_are_ignored(storage):
    """Every candidate of a best-of-N post is stored with its ids and prediction; the sent one is marked."""
    pid = await storage.add_post(NewPost(channel_id=1, text="b", adapter="base", created_at=0.0, message_id=5))
    cands = [Candidate("a", (1, 2), 0.5, True), Candidate("b", (3,), 0.9, True), Candidate("", (0,), None, False)]
    await storage.add_candidates(pid, cands, chosen=1)
    await storage.add_candidates(pid, cands[:1], chosen=0)  # a replay changes nothing
    got = (await storage.post_candidates([pid, pid + 1]))[pid]
    assert [(c.idx, c.text, c.completion_ids, c.predicted, c.postable, c.chosen) for c in got] == [
        (0, "a", (1, 2), 0.5, True, False),
        (1, "b", (3,), 0.9, True, True),
        (2, "", (0,), None, False, False),
    ]
    assert pid + 1 not in await storage.post_candidates([pid + 1])
