"""The one output filter for every text Kilroy sends, and the escaping of members' words it echoes. Pure.

Generated text (posts, story answers) is *checked*: blocklisted words, invite links and (unless allowed) URLs make
it fail, and the caller resamples a bounded number of times, then skips. Text that passes is *neutralised*: mass
mentions (`@everyone`, `@here`) and mention markup (`<@id>`, `<@&id>`) get a zero-width space, so they render as
plain text even where Discord would otherwise ping (belt and braces: the bot also sends `AllowedMentions.none()`).
Members' own words (story lines, openings) are checked the same way and refused with a message when they fail.

One normalisation comes before every check (`normalise`): Unicode NFKC, format and invisible characters removed,
whitespace collapsed. What is stored and sent is that normalised text. The checks compare its *skeleton*
(`skeleton`): accents stripped, confusable letters mapped to the Latin ones they imitate (the Unicode confusables
data shipped by `confusable-homoglyphs`), IDNA's full stops read as '.', case folded. So `dіscord．gg` (Cyrillic
і, full-width stop), `bad\u200bword` or `kill  yourself` fail as their plain forms do.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

ZWSP = "\u200b"
ZWJ = "\u200d"
# blanks outside the whitespace category (Hangul fillers, the braille blank): they render as a space, so they count
# as one; and the combining grapheme joiner, which renders as nothing
BLANKS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
INVISIBLE = frozenset("\u034f")
# characters that reorder what follows them: a member's line must not carry them (they are Cf, so normalising
# would drop them silently; a member is told instead)
BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")
# full stops that IDNA (UTS #46) maps to '.' in a host name, so a browser opens `discord。gg` as discord.gg
IDNA_DOTS = {ord("\u3002"): ".", ord("\uff0e"): ".", ord("\uff61"): "."}
_NEWLINES = re.compile(r"[\r\x0b\x0c\x85\u2028\u2029]")

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


def _visible(text: str) -> str:
    """`text` without control characters (but newline and tab), format characters and invisible fillers.

    A zero-width joiner between two symbols stays: it glues emoji sequences (a family, a flag); between letters it
    would only hide a word from the checks, and the skeleton drops it anyway."""
    out: list[str] = []
    for i, ch in enumerate(text):
        if ch in BLANKS:
            out.append(" ")
        elif ch == ZWJ:
            if out and i + 1 < len(text) and _symbol(out[-1]) and _symbol(text[i + 1]):
                out.append(ch)
        elif ch in "\n\t" or (unicodedata.category(ch) not in ("Cc", "Cf") and ch not in INVISIBLE):
            out.append(ch)
    return "".join(out)


def _symbol(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "SM" or ch == "\ufe0f"


def normalise(text: str, *, one_line: bool = False) -> str:
    """The one normalisation before every check: NFKC, invisible characters removed, whitespace collapsed.

    Runs of spaces become one space; a run holding a line break becomes one line break (or a space, `one_line`).
    This is the text that is checked, stored and sent."""
    text = _visible(unicodedata.normalize("NFKC", _NEWLINES.sub("\n", text)))
    if one_line:
        return " ".join(text.split())
    lines = (" ".join(line.split()) for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


@functools.cache
def _confusables() -> dict[int, str]:
    """Each non-ASCII character that imitates a printable ASCII one, mapped to it (built once, from the Unicode
    confusables data that `confusable-homoglyphs` ships)."""
    from confusable_homoglyphs.confusables import confusables_data

    table: dict[int, str] = {}
    for ch, glyphs in confusables_data.items():
        if len(ch) != 1 or ch.isascii():
            continue
        ascii_ = [g["c"] for g in glyphs if len(g["c"]) == 1 and g["c"].isascii() and g["c"].isprintable()]
        if ascii_ and ascii_[0] != " ":
            # Unicode's prototype for a capital I look-alike is 'l'; folded to lower case, it must read as 'i'
            table[ord(ch)] = "I" if ascii_[0] == "l" and ch.isupper() else ascii_[0]
    return table


def skeleton(text: str) -> str:
    """What the checks compare: the normalised text on one line, accents stripped, confusable letters mapped to
    the Latin ones they imitate, IDNA full stops as '.', case folded. Never sent: it mangles other scripts."""
    text = normalise(text, one_line=True).replace(ZWJ, "").translate(IDNA_DOTS)
    text = "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))
    text = unicodedata.normalize("NFKC", text.translate(_confusables()))
    return " ".join(text.casefold().split())


def member_text_problem(text: str) -> str | None:
    """Why a member's raw text is refused before it is normalised: control characters (but newline and tab) or
    characters that override the text direction; None if neither."""
    if any(ch in BIDI for ch in text):
        return "it contains characters that change the text direction"
    if any(unicodedata.category(ch) == "Cc" and ch not in "\n\t" for ch in text):
        return "it contains control characters"
    return None


def neutralise_mentions(text: str) -> str:
    """Insert a zero-width space after every `@` that could ping (`@everyone`, `@here`, `<@id>`, `<@&id>`)."""
    return MENTION.sub(lambda m: f"@{ZWSP}{m.group(1)}", text)


def blocked_word(text: str, blocklist: Sequence[str]) -> str | None:
    """The first blocklisted word or phrase in `text` (whole words, compared as skeletons), or None."""
    seen = skeleton(text)
    for word in blocklist:
        if (target := skeleton(word)) and re.search(rf"(?<!\w){re.escape(target)}(?!\w)", seen):
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
        """Pass or fail one text, checked in its normalised form; a passing text comes back normalised (what is
        stored and sent is what was checked), its mentions neutralised."""
        text = normalise(text)
        if not text:
            return Verdict(False, text, "empty")
        if blocked_word(text, self.blocklist) is not None:
            return Verdict(False, text, "blocklist")
        seen = skeleton(text)
        if INVITE.search(seen):
            return Verdict(False, text, "invite")
        if not self.allow_urls and URL.search(seen):
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
        """Why a member's own line cannot be echoed (a message for them), or None if it can (an empty line is the
        caller's to refuse)."""
        if problem := member_text_problem(text):
            return problem
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
    """A member's words made safe to echo: normalised to one line, markdown escaped, mentions neutralised."""
    text = normalise(text, one_line=True)
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
