"""The score formula exists once in SQL (bot/storage/scores.py) and agrees with the pure one (bot/domain/scoring.py)."""

from __future__ import annotations

import asyncio
import math
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st

from bot.domain.scoring import ScoreFormula, score_post
from bot.storage import NewPost, Storage

EMOJI = ["👍", "👎", "❤️", "🎉", "<:kilroy:123>", "<a:dance:456>"]  # unicode, custom and animated custom emoji
POSTS = 6
MEMBERS = 5
NOW = 1_800_000_000.0

weights = st.floats(min_value=-3.0, max_value=3.0, allow_nan=False).map(lambda w: round(w, 3))
formulas = st.builds(
    ScoreFormula,
    emoji_weights=st.dictionaries(st.sampled_from(EMOJI), weights, max_size=len(EMOJI)),
    default_emoji_weight=weights,
    reply_weight=weights,
)
# (post, member, emoji, is_bot): a member may react with several emoji; a bot's reaction is logged, never a vote
reactions = st.lists(
    st.tuples(st.integers(0, POSTS - 1), st.integers(1, MEMBERS), st.sampled_from(EMOJI), st.booleans()),
    max_size=40,
)
removals = st.lists(st.integers(0, 39), max_size=8)  # indexes into the reactions: a removed reaction is no vote
replies = st.lists(st.tuples(st.integers(0, POSTS - 1), st.integers(1, MEMBERS)), max_size=12)


async def _scores(
    path: Path | str, formula: ScoreFormula, reactions: list, removed: list[int], replies: list
) -> tuple[dict[int, float], dict[int, float], dict[int, float]]:
    """Each post's score three ways: score_post on its record, the dashboard's SQL and /stats' SQL."""
    async with Storage.open(path) as storage:
        for i in range(POSTS):
            await storage.add_post(
                NewPost(1 + i % 2, f"p{i}", "v1", created_at=NOW - i * 60.0, message_id=1000 + i, guild_id=9)
            )
        for post, member, emoji, is_bot in reactions:
            await storage.add_vote(1000 + post, member + (100 if is_bot else 0), emoji, at=NOW, is_bot=is_bot)
        for i in removed:
            if i < len(reactions):
                post, member, emoji, is_bot = reactions[i]
                await storage.remove_vote(1000 + post, member + (100 if is_bot else 0), emoji, at=NOW)
        for n, (post, member) in enumerate(replies):
            await storage.add_reply(5000 + n, 1000 + post, member, at=NOW)
        records = await storage.post_records(created_after=0.0)
        dashboard = await storage.scored_posts(formula, since=0.0, limit=None)
        stats = await storage.stats_summary(
            created_after=0.0,
            guild_id=9,
            emoji_weights=formula.emoji_weights,
            default_weight=formula.default_emoji_weight,
            reply_weight=formula.reply_weight,
            top=POSTS,
        )
    python = {r.post.id: score_post(r, formula) for r in records}
    return python, {p.id: p.score for p in dashboard}, {p.id: s for s, p in stats.top}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(formula=formulas, reactions=reactions, removed=removals, replies=replies)
def test_sql_scores_equal_the_python_formula_on_random_engagement(formula, reactions, removed, replies):
    """Random posts, votes (several emoji per member, custom emoji, bots, removals), replies and emoji weights:
    the dashboard's and /stats' SQL scores equal score_post on every post."""
    with tempfile.TemporaryDirectory() as tmp:
        python, dashboard, stats = asyncio.run(_scores(Path(tmp) / "k.db", formula, reactions, removed, replies))
    _same(python, dashboard, stats)


# fewer examples: the formula's logic is searched on SQLite above; here the other engine's arithmetic, casts and AVG
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(formula=formulas, reactions=reactions, removed=removals, replies=replies)
def test_postgresql_scores_equal_the_python_formula_on_random_engagement(
    postgres_server, formula, reactions, removed, replies
):
    """The same on PostgreSQL: its SQL (typed parameters, its own AVG and SUM) gives score_post's scores."""
    url = postgres_server.new_database()
    try:
        python, dashboard, stats = asyncio.run(_scores(url, formula, reactions, removed, replies))
    finally:
        postgres_server.drop_database(url)
    _same(python, dashboard, stats)


def _same(python: dict[int, float], dashboard: dict[int, float], stats: dict[int, float]) -> None:
    assert set(python) == set(dashboard) == set(stats) and len(python) == POSTS
    for post_id, expected in python.items():
        assert math.isclose(dashboard[post_id], expected, abs_tol=1e-9), (post_id, dashboard[post_id], expected)
        assert math.isclose(stats[post_id], expected, abs_tol=1e-9), (post_id, stats[post_id], expected)
