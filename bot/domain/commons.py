"""The commons for the cold start (issue 24, pure): who pools into it, and what serves a community.

The commons is one lineage (`adapters/commons/`) trained on the pooled settled posts of every server that allows it.
A new or quiet server is served by the commons until it has KILROY_COMMUNITY_MIN_POSTS settled posts of its own
*and* its own gate has passed (its own pointer moved); its first adapter starts from the commons.

KILROY_COMMONS is the bot-wide default, a server's admin can override it (`/commons join|leave|default`):
    opt-out   every server pools unless its admin left     (the default)
    opt-in    only servers whose admin joined pool
    off       no commons at all: nothing pools, nothing is served from it, a server's choice cannot turn it on
Only the bot's own posts and the reactions they got are pooled, never a member's text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence, Set

from bot.domain.community import COMMONS
from bot.domain.records import BASE, PostRecord

MODES = ("opt-in", "opt-out", "off")
JOIN, LEAVE = "in", "out"  # a server's own choice, as stored (absent: the bot-wide default)


def pools(mode: str, choice: str | None) -> bool:
    """Whether a server's posts go into the commons, from the bot-wide `mode` and its admin's `choice`."""
    if mode not in MODES:
        raise ValueError(f"KILROY_COMMONS must be one of {', '.join(MODES)}, not {mode!r}")
    if mode == "off":
        return False
    if choice in (JOIN, LEAVE):
        return choice == JOIN
    return mode == "opt-out"


def pooled_guilds(mode: str, guilds: Iterable[int], choices: Mapping[int, str]) -> set[int]:
    """The servers among `guilds` whose posts the commons trains on."""
    return {g for g in guilds if pools(mode, choices.get(g))}


def serving(community: str, *, own: str, commons: str, settled: int | None, min_posts: int, mode: str) -> str:
    """The reference that serves `community`.

    `own` and `commons` are the two lineages' pointers as references ("base" when empty); `settled` is the
    community's settled posts (None: not counted yet, its own pointer then serves as before). A community serves its
    own adapter once it has `min_posts` settled posts and an adapter of its own (its gate passed); before that the
    commons (unless KILROY_COMMONS=off), and the base model when neither has anything."""
    if community == COMMONS:
        return own
    if own != BASE and (settled is None or settled >= min_posts):
        return own
    if mode == "off":
        return own
    return commons if commons != BASE else own


def parent(own: str, commons: str, mode: str) -> str:
    """What a community's next adapter trains from: its own pointer, else (its first) the commons'."""
    if own != BASE or mode == "off":
        return own
    return commons


def trains_own(settled: int, min_posts: int) -> bool:
    """A community trains its own lineage once it has `min_posts` settled posts (before that the commons serves it,
    and an adapter of its own would not serve anyway)."""
    return settled >= min_posts


def commons_batch(
    records: Sequence[PostRecord], pooled: Set[int], since: float | None
) -> tuple[list[PostRecord], list[PostRecord], list[int]]:
    """(window, batch, claimed post ids): the commons' inputs from a trailing window of settled posts.

    The window keeps posts made outside any server and those of the `pooled` servers. The batch is the posts made
    after `since` (the last commons training's newest post; None: never trained) and, of those outside any server,
    the ones nobody trained on yet. The commons claims (marks trained) only the posts outside any server: a server's
    posts stay fresh for its own lineage, which trains on them too."""
    window = [r for r in records if r.post.guild_id is None or r.post.guild_id in pooled]
    fresh = []
    for r in window:
        if r.post.guild_id is None:
            if r.post.trained_at is None and r.post.trained_run is None:
                fresh.append(r)
        elif since is None or r.post.created_at > since:
            fresh.append(r)
    return window, fresh, [r.post.id for r in fresh if r.post.guild_id is None]


def describe(mode: str, choice: str | None) -> str:
    """What `/commons` says about a server: whether it pools, and why."""
    if mode == "off":
        return "The commons is off for this bot (KILROY_COMMONS=off): no server's posts are pooled."
    why = "its admin chose so" if choice in (JOIN, LEAVE) else f"the bot-wide default (KILROY_COMMONS={mode})"
    if pools(mode, choice):
        return (
            f"This server's posts and their reactions help train the commons, the shared adapter that serves new "
            f"and quiet servers ({why}). Members' messages are never pooled."
        )
    return f"This server's posts are not pooled into the commons ({why})."
