"""Communities and adapter references (pure): who learns, and how a served adapter is named.

A community is a Discord server (guild). Its id is `"g<guild_id>"` ("g123"); the shared cold-start lineage is
`"commons"`. Each community has its own lineage of adapter versions under `adapters/<community>/vNNNN`
(bot/adapters/lineages.py). A served adapter is named by its *reference* `"<community>/<version>"`
("g123/v0004", "commons/v0002"); `"base"` means no adapter. The reference is what posts record in
`posts.adapter`, what the generator loads by (it maps a reference to a peft-safe name itself), and what operators
type in `/adapter use` and `kilroy adapters ... --community g123`.

API:
    community_id(guild_id) -> "g123"         guild_of("g123") -> 123 (None for the commons)
    is_community("g123"|"commons") -> bool   validate_community(c) -> c, or InvalidCommunity
    ref(community, version) -> "g123/v0004"  ("base" stays "base")
    parse_ref("g123/v0004") -> ("g123", "v0004");  parse_ref("base") -> (None, "base")
"""

from __future__ import annotations

import re

from bot.domain.records import BASE

COMMONS = "commons"
_GUILD = re.compile(r"^g([1-9][0-9]{0,19})$")


class InvalidCommunity(ValueError):
    """Not a community id ("g<guild id>" or "commons")."""

    def __init__(self, text: str) -> None:
        super().__init__(f"{text!r} is not a community: use 'g<server id>' (e.g. g123) or '{COMMONS}'")


def community_id(guild_id: int) -> str:
    """The community of a Discord server: "g<guild_id>"."""
    if int(guild_id) <= 0:
        raise InvalidCommunity(str(guild_id))
    return f"g{int(guild_id)}"


def guild_of(community: str) -> int | None:
    """The guild id of a server's community; None for the commons."""
    validate_community(community)
    return None if community == COMMONS else int(community[1:])


def is_community(text: str) -> bool:
    """True for "commons" and for "g<positive integer>"."""
    return isinstance(text, str) and (text == COMMONS or bool(_GUILD.match(text)))


def validate_community(text: str) -> str:
    """Return `text` if it is a community id, else raise InvalidCommunity."""
    if not is_community(text):
        raise InvalidCommunity(str(text)[:80])
    return text


def ref(community: str, version: str) -> str:
    """The serving reference of a version of a community's lineage ("base" stays "base")."""
    if version == BASE:
        return BASE
    return f"{validate_community(community)}/{version}"


def parse_ref(reference: str) -> tuple[str | None, str]:
    """("g123", "v0004") from "g123/v0004"; (None, "base") for "base". Raises ValueError on anything else
    (a bare version name is not a reference: it does not say whose it is)."""
    if reference == BASE:
        return None, BASE
    community, sep, version = str(reference).partition("/")
    if not sep or not version or "/" in version or not is_community(community):
        raise ValueError(f"{str(reference)[:80]!r} is not an adapter reference: use '<community>/<version>' or 'base'")
    return community, version
