"""The score formula in SQL, written once: every query that ranks or averages posts by score reads this CTE.

It is `bot.domain.scoring.score_post` expressed in SQL that SQLite and PostgreSQL both run: for each member, the
mean weight of their emoji on the post, summed over members, plus the reply weight per distinct replying member (bots
never reach the votes table).
A test compares the two on random data. Scoring in SQL keeps a year of posts off the event loop (SQLite releases
the GIL, and only a few rows come back) and holds no per-member dict in Python; member ids never leave the
database, only counts do.
"""

from __future__ import annotations

from typing import Any

from bot.config.settings import ScoreFormula


def scored_cte(formula: ScoreFormula, where: str, where_args: list[Any]) -> tuple[str, list[Any]]:
    """`WITH ... scored AS (...)`: the posts `p` matching `where`, every column of theirs plus `score`, `voters` and
    `repliers`; returns the SQL and its arguments, to be followed by a `SELECT ... FROM scored`."""
    pairs = list(formula.emoji_weights.items())
    # typed: PostgreSQL cannot infer a bare parameter's type (SQLite reads DOUBLE PRECISION as REAL)
    weights = (
        " UNION ALL ".join("SELECT CAST(? AS TEXT), CAST(? AS DOUBLE PRECISION)" for _ in pairs)
        or "SELECT CAST(NULL AS TEXT), CAST(NULL AS DOUBLE PRECISION) WHERE 1 = 0"
    )
    # correlated subqueries: each post's votes and replies are found through their post-id indexes (a join to an
    # aggregated CTE had no index and took 40 s over 20k posts); the votes' primary key (post, member, emoji)
    # already groups a post's votes by member
    sql = f"""
        WITH emoji_weights(emoji, weight) AS ({weights}),
        counted AS (
            SELECT p.*,
                COALESCE((SELECT SUM(mean_weight) FROM (
                    SELECT AVG(COALESCE(w.weight, CAST(? AS DOUBLE PRECISION))) AS mean_weight
                    FROM votes v LEFT JOIN emoji_weights w ON w.emoji = v.emoji
                    WHERE v.post_id = p.id GROUP BY v.member_id) AS per_member), 0.0) AS vote_score,
                (SELECT COUNT(DISTINCT v.member_id) FROM votes v WHERE v.post_id = p.id) AS voters,
                (SELECT COUNT(DISTINCT r.member_id) FROM replies r WHERE r.post_id = p.id) AS repliers
            FROM posts p WHERE {where}),
        scored AS (SELECT *, vote_score + CAST(? AS DOUBLE PRECISION) * repliers AS score FROM counted)
    """
    args: list[Any] = [x for pair in pairs for x in pair]
    return sql, [*args, formula.default_emoji_weight, *where_args, formula.reply_weight]
