"""The one output filter for every text Kilroy sends, and the escaping of members' words it echoes. Pure.

Generated text (posts, story answers) is *checked*: blocklisted words, invite links and (unless allowed) URLs make
it fail, and the caller resamples a bounded number of times, then skips. Text that passes is *neutralised*: mass
mentions (`@everyone`, `@here`) and mention markup (`<@id>`, `<@&id>`) get a zero-width space, so they render as
plain text even where Discord would otherwise ping (belt and braces: the bot also sends `AllowedMentions.none()`).
Members' own words (story lines, openings) are checked the same way and refused with a message when they fail.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

ZWSP = "\u200b"

# discord.gg/x, discord.com/invite/x, discordapp.com/invite/x, discord.me/x, dsc.gg/x, with or without a scheme
INVITE = re.compile(
    r"(?:https?://)?(?:www\.)?(?:discord(?:app)?\.(?:gg|io|me|li)|discord(?:app)?\.com/invite|dsc\.gg)\s*/\s*\S+",
    re.IGNORECASE,
)
# a scheme or www. link, or a bare domain with a common top-level domain ("example.com/x")
URL = re.compile(
    r"(?:\b[a-z][a-z0-9+.-]*://\S+)|(?:\bwww\.\S+)"
    r"|(?:\b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:com|net|org|io|gg|xyz|ru|info|co|me|ly|app|dev|link|site|tk|to)\b(?:/\S*)?)",
    re.IGNORECASE,
)
# @everyone / @here, and user, nickname and role mention markup: everything Discord could turn into a ping
MENTION = re.compile(r"@(everyone|here|[!&]?\d+)", re.IGNORECASE)

REASONS = ("empty", "blocklist", "invite", "url")


def neutralise_mentions(text: str) -> str:
    """Insert a zero-width space after every `@` that could ping (`@everyone`, `@here`, `<@id>`, `<@&id>`)."""
    return MENTION.sub(lambda m: f"@{ZWSP}{m.group(1)}", text)


def blocked_word(text: str, blocklist: Sequence[str]) -> str | None:
    """The first blocklisted word or phrase in `text` (case-insensitive, whole words), or None."""
    lowered = text.lower()
    for word in blocklist:
        if re.search(rf"(?<!\w){re.escape(word.lower())}(?!\w)", lowered):
            return word
    return None


@dataclass(frozen=True)
class Verdict:
    """The filter's answer: `text` is the neutralised text to send when `ok`; `reason` names the failure."""

    ok: bool
    text: str
    reason: str | None = None


@dataclass
class OutputFilter:
    """Checks and neutralises text before Discord sees it; counts what it stopped (bounded: one key per reason)."""

    blocklist: tuple[str, ...] = ()
    allow_urls: bool = False
    resampled: Counter[str] = field(default_factory=Counter)
    skipped: int = 0

    def check(self, text: str) -> Verdict:
        """Pass or fail one text; a passing text comes back with its mentions neutralised."""
        if not text.strip():
            return Verdict(False, text, "empty")
        if blocked_word(text, self.blocklist) is not None:
            return Verdict(False, text, "blocklist")
        if INVITE.search(text):
            return Verdict(False, text, "invite")
        if not self.allow_urls and URL.search(text):
            return Verdict(False, text, "url")
        return Verdict(True, neutralise_mentions(text))

    def check_generated(self, text: str) -> Verdict:
        """`check`, counting a failure as one resample (the caller tries again or gives up with `gave_up`)."""
        verdict = self.check(text)
        if not verdict.ok:
            self.resampled[verdict.reason or "?"] += 1
        return verdict

    def gave_up(self) -> None:
        """Count a text the caller skipped after its bounded resamples."""
        self.skipped += 1

    def member_problem(self, text: str) -> str | None:
        """Why a member's own line cannot be echoed (a message for them), or None if it can."""
        verdict = self.check(text)
        if verdict.ok or verdict.reason == "empty":
            return None
        return {
            "blocklist": "it contains a word this server has blocked",
            "invite": "it contains an invite link",
            "url": "it contains a link (links are off on this server)",
        }[verdict.reason or "url"]

    def summary(self) -> str:
        """One line for /stats: what was resampled and skipped since start."""
        if not self.resampled and not self.skipped:
            return "Output filter: nothing stopped since start."
        parts = ", ".join(f"{reason} {n}" for reason, n in sorted(self.resampled.items()))
        return f"Output filter since start: {sum(self.resampled.values())} resampled ({parts}), {self.skipped} skipped."


def escape_member_text(text: str) -> str:
    """A member's words made safe to echo: one line, markdown escaped, mentions neutralised."""
    text = " ".join(text.split())
    text = re.sub(r"([\\*_~`|\[\]])", r"\\\1", text)  # emphasis, code, spoilers, masked links
    text = re.sub(r"^([#>-])", r"\\\1", text)  # a heading, quote or list marker at the start
    return neutralise_mentions(text)


def guild_allowed(guild_id: int | None, allowlist: Sequence[int]) -> bool:
    """True if Kilroy works in this server: it is in KILROY_GUILD_IDS, or that list is empty (every server)."""
    return guild_id is not None and (not allowlist or guild_id in allowlist)


class Cooldowns:
    """Per-key cooldowns with a bounded memory: `take` checks and sets in one synchronous step.

    Being synchronous matters: called before a command's first await, simultaneous invocations cannot both pass.
    At most `max_keys` keys are remembered; when full, expired keys go first, then the oldest.
    """

    def __init__(self, max_keys: int = 10_000) -> None:
        self.max_keys = max_keys
        self._until: dict[tuple[object, ...], float] = {}  # insertion-ordered: oldest first

    def take(self, key: tuple[object, ...], seconds: float, now: float) -> float | None:
        """Start the key's cooldown and return None, or return the seconds left if it is still cooling down."""
        if seconds <= 0:
            return None
        until = self._until.get(key)
        if until is not None and until > now:
            return until - now
        self._until.pop(key, None)
        if len(self._until) >= self.max_keys:
            self._evict(now)
        self._until[key] = now + seconds
        return None

    def _evict(self, now: float) -> None:
        for key in [k for k, until in self._until.items() if until <= now]:
            del self._until[key]
        while len(self._until) >= self.max_keys:
            del self._until[next(iter(self._until))]

    def __len__(self) -> int:
        return len(self._until)
