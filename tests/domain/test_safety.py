"""The pure output filter, mention escaping, the server allowlist and bounded cooldowns (bot/domain/safety.py)."""

import pytest

from bot.domain.safety import (
    ZWSP,
    Cooldowns,
    OutputFilter,
    escape_member_text,
    guild_allowed,
    member_text_problem,
    neutralise_mentions,
    normalise,
    skeleton,
)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("buy Crypto now", "blocklist"),
        ("join discord.gg/abcdef", "invite"),
        ("https://discord.com/invite/abc", "invite"),
        ("discordapp.com/invite/x", "invite"),
        ("dsc.gg/spam", "invite"),
        ("see https://example.org/page", "url"),
        ("www.example.org", "url"),
        ("go to example.com/x", "url"),
        ("ftp://files.example", "url"),
    ],
)
def test_filter_refuses(text, reason):
    assert OutputFilter(("crypto",)).check(text).reason == reason


@pytest.mark.parametrize("text", ["a quiet morning", "cryptography rocks", "she said: wait... then left", "3.14 pies"])
def test_filter_passes_plain_text(text):
    assert OutputFilter(("crypto",)).check(text).ok


def test_urls_allowed_when_configured_but_invites_never():
    f = OutputFilter(allow_urls=True)
    assert f.check("see https://example.org").ok
    assert f.check("discord.gg/abc").reason == "invite"


def test_mentions_are_neutralised_not_refused():
    """Mass mentions and mention markup pass the filter but come out unable to ping."""
    verdict = OutputFilter().check("hi @everyone, @here, <@123>, <@!456> and <@&789>")
    assert verdict.ok
    assert "@everyone" not in verdict.text and "<@123>" not in verdict.text and "<@&789>" not in verdict.text
    assert verdict.text.count(f"@{ZWSP}") == 5


def test_member_text_escaped_for_echo():
    text = escape_member_text("**bold** <@42>\n@everyone `code` [link](x)")
    assert "\n" not in text and "\\*\\*bold\\*\\*" in text and f"<@{ZWSP}42>" in text and f"@{ZWSP}everyone" in text
    assert "\\`code\\`" in text and "\\[link\\]" in text


def test_member_problem_messages():
    f = OutputFilter(("crypto",))
    assert "invite" in f.member_problem("discord.gg/x")
    assert "link" in f.member_problem("http://x.org")
    assert "blocked" in f.member_problem("crypto!")
    assert f.member_problem("a fine line <@1>") is None  # mentions are escaped on echo, not refused


def test_counts_and_summary():
    f = OutputFilter()
    f.check_generated("discord.gg/x")
    f.check_generated("http://x.org")
    f.check_generated("fine")
    f.gave_up()
    assert dict(f.resampled) == {"invite": 1, "url": 1} and f.skipped == 1
    assert "2 resampled" in f.summary() and "1 skipped" in f.summary()


def test_neutralise_is_idempotent_on_plain_text():
    assert neutralise_mentions("mail me at a@b") == "mail me at a@b"


@pytest.mark.parametrize(
    ("guild", "allow", "ok"),
    [(1, (1, 2), True), (3, (1, 2), False), (None, (1,), False), (5, (), True), (None, (), False)],
)
def test_guild_allowlist(guild, allow, ok):
    assert guild_allowed(guild, allow) is ok


def test_cooldown_take_is_check_and_set():
    """The first take passes; the next ones within the window get the seconds left; another key is independent."""
    c = Cooldowns()
    assert c.take((1, "story line"), 10, now=100.0) is None
    assert [c.take((1, "story line"), 10, now=100.0) for _ in range(4)] == [10.0] * 4
    assert c.take((2, "story line"), 10, now=100.0) is None
    assert c.take((1, "story line"), 10, now=105.0) == 5.0
    assert c.take((1, "story line"), 10, now=110.0) is None
    assert c.take((1, "stats"), 0, now=110.0) is None and c.take((1, "stats"), 0, now=110.0) is None


def test_cooldowns_memory_is_bounded():
    """Many members never grow the table past its bound: expired keys go first, then the oldest."""
    c = Cooldowns(max_keys=100)
    for member in range(10_000):
        c.take((member, "x"), 5, now=float(member))
        assert len(c) <= 100
    assert c.take((9_999, "x"), 5, now=9_999.5) is not None  # the newest is still remembered


# --- one normalisation before every check (issue 23, item 6) ----------------------------------------------------------

BLOCKLIST = ("badword", "kill yourself", "crypto", "ass")

# Each of these passed the filter before it normalised (the issue's own cases first), and each must fail now.
OBFUSCATED = [
    # invites: zero-width, look-alike letters, other full stops, full-width, styled letters
    ("discord\u200b.gg/abc", "invite"),
    ("d\u0456scord.gg/abc", "invite"),  # Cyrillic i
    ("discord\uff0egg/abc", "invite"),  # full-width full stop
    ("discord\u3002gg/abc", "invite"),  # ideographic full stop
    ("\uff44\uff49\uff53\uff43\uff4f\uff52\uff44.gg/abc", "invite"),  # full-width letters
    ("discord\uff61gg/abc", "invite"),  # half-width ideographic full stop
    ("discord\u2024gg/abc", "invite"),  # one dot leader
    ("discord.gg\u2215abc", "invite"),  # division slash
    ("discord.gg\uff0fabc", "invite"),  # full-width solidus
    ("DISCORD.GG/abc", "invite"),
    ("D\u0399SCORD.GG/abc", "invite"),  # Greek capital iota
    ("disc\u043erd.gg/abc", "invite"),  # Cyrillic o
    ("di\u0455cord.gg/abc", "invite"),  # Cyrillic dze
    ("dis\u0441ord.gg/abc", "invite"),  # Cyrillic es
    ("disc\u00adord.gg/abc", "invite"),  # soft hyphen
    ("dis\u2060cord.gg/abc", "invite"),  # word joiner
    ("discord.\ufeffgg/abc", "invite"),  # zero-width no-break space
    ("discord\u200c.gg/abc", "invite"),  # zero-width non-joiner
    ("d\u200di\u200ds\u200dc\u200do\u200dr\u200dd.gg/abc", "invite"),  # zero-width joiners between letters
    ("\U0001d41d\U0001d422\U0001d42c\U0001d41c\U0001d428\U0001d42b\U0001d41d.\U0001d420\U0001d420/abc", "invite"),
    ("\u24d3\u24d8\u24e2\u24d2\u24de\u24e1\u24d3.gg/abc", "invite"),  # circled letters
    ("join d\u0131scord.gg/abc", "invite"),  # dotless i
    ("discord.com/invite/abc", "invite"),
    ("discord.c\u043em/invite/abc", "invite"),
    ("discordapp.com/\u0456nvite/abc", "invite"),
    ("\uff44\uff49\uff53\uff43\uff4f\uff52\uff44\uff41\uff50\uff50.com/invite/x", "invite"),
    ("ds\u0441.gg/spam", "invite"),
    ("dsc\u3002gg/spam", "invite"),
    ("https://discord\u3002gg/abc", "invite"),
    ("discord.gg /abc", "invite"),
    ("discord.g\u0261/abc", "invite"),  # Latin script g
    ("di\u0301scord.gg/abc", "invite"),  # combining accent
    # links: the scheme split or disguised
    ("https:\u200b//x.example", "url"),
    ("\uff48\uff54\uff54\uff50\uff53://x.example/x", "url"),  # full-width https
    ("https\uff1a//x.example", "url"),  # full-width colon
    ("https\u2236\u2044\u2044x.example", "url"),  # ratio sign and fraction slashes
    ("h\u200dttps://x.example", "url"),
    ("\u202ehttps://x.example", "url"),  # right-to-left override in front
    ("HTTPS://X.EXAMPLE", "url"),
    ("www\u3002example\u3002com", "url"),
    ("www\uff0eexample\uff0eorg", "url"),
    ("go to exampl\u0435.com/x", "url"),  # Cyrillic e
    ("see \u0445.com", "url"),  # Cyrillic ha
    ("http\u00ad://x.example", "url"),
    # blocklisted words
    ("bad\u200bword", "blocklist"),
    ("b\u0430dword", "blocklist"),  # Cyrillic a
    ("\uff42\uff41\uff44\uff57\uff4f\uff52\uff44", "blocklist"),  # full-width
    ("bad\u00adword", "blocklist"),  # soft hyphen
    ("ba\u0301dword", "blocklist"),  # combining acute
    ("b\u00e1dw\u00f6rd", "blocklist"),  # precomposed accents
    ("kill  yourself", "blocklist"),  # two spaces
    ("kill\nyourself", "blocklist"),  # a newline
    ("kill\tyourself", "blocklist"),
    ("kill\u00a0yourself", "blocklist"),  # no-break space
    ("kill\u3000yourself", "blocklist"),  # ideographic space
    ("kill\u3164yourself", "blocklist"),  # Hangul filler, shown as a space
    ("kill\u2800yourself", "blocklist"),  # braille blank
    ("kill \u200byourself", "blocklist"),
    ("BADWORD", "blocklist"),
    ("b\u03b1dword", "blocklist"),  # Greek alpha
    ("badw\u03bfrd", "blocklist"),  # Greek omicron
    ("\u042cadword", "blocklist"),  # Cyrillic soft sign as b
    ("\U0001d41b\U0001d41a\U0001d41d\U0001d430\U0001d428\U0001d42b\U0001d41d", "blocklist"),  # mathematical bold
    ("bad\u034fword", "blocklist"),  # combining grapheme joiner
    ("bad\u2060word", "blocklist"),
    ("buy \u0441rypto now", "blocklist"),
    ("cr\u200by\u200bp\u200bt\u200bo", "blocklist"),
    ("you \u0430ss", "blocklist"),
    ("(badword)", "blocklist"),
]

# Ordinary sentences that must pass: words that contain a blocklisted string, text that only looks like a link
# (Discord does not turn it into one), other scripts, emoji sequences.
ORDINARY = [
    "a quiet morning",
    "cryptography rocks",
    "the class assignment is due",
    "grass grows in the passage",
    "an assassin in the classic novel",
    "skill yourself up first",
    "kill yourselves? no, kill time",
    "the badwords list is long",
    "she said: wait... then left",
    "3.14 pies",
    "version 1.2.3 is out",
    "open readme.md and script.py",
    "e.g. pears, i.e. fruit",
    "meet at 10.30 a.m. tomorrow",
    "node.js and vue.js",
    "https is safer than http",
    "type discord dot gg in your head",
    "the discord server was fun",
    "gg wp, well played",
    "a ratio of 1:2 // half",
    "caf\u00e9 au lait, na\u00efve r\u00e9sum\u00e9",
    "\u041f\u0440\u0438\u0432\u0435\u0442, \u043a\u0430\u043a \u0434\u0435\u043b\u0430?",
    "\u039a\u03b1\u03bb\u03b7\u03bc\u03ad\u03c1\u03b1 \u03c3\u03b5 \u03cc\u03bb\u03bf\u03c5\u03c2",
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3002\u6b21\u306e\u6587",
    "family night \U0001f468\u200d\U0001f469\u200d\U0001f467 with pie \U0001f967",
    "the rainbow flag \U0001f3f3\ufe0f\u200d\U0001f308 flies",
    "Dr. Who and Mr. Smith",
    "the end.Next day it rained",
    "a/b testing and c/d notes",
    "mail me at a@b",
    "section 4.2: results",
    "\u00bfqu\u00e9 tal? \u00a1muy bien!",
]


@pytest.mark.parametrize(("text", "reason"), OBFUSCATED)
def test_obfuscated_text_refused(text, reason):
    """Every check runs on the normalised skeleton: zero-width, look-alike, full-width and split forms fail."""
    assert OutputFilter(BLOCKLIST).check(text).reason == reason


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_text_passes(text):
    """No false positives: blocklisted strings inside other words, link-looking text, other scripts, emoji."""
    verdict = OutputFilter(BLOCKLIST).check(text)
    assert verdict.ok, verdict.reason


def test_tables_are_big_enough():
    assert len(OBFUSCATED) >= 60 and len(ORDINARY) >= 30


def test_what_passes_is_the_normalised_text():
    """The text sent (and stored) is the one that was checked: NFKC, invisible characters gone, spaces collapsed."""
    morning = "\uff4d\uff4f\uff52\uff4e\uff49\uff4e\uff47"  # full-width
    verdict = OutputFilter(BLOCKLIST).check(f"  a \u200bquiet\u00ad  {morning} \n\n\n next  line ")
    assert verdict.ok and verdict.text == "a quiet morning\nnext line"
    assert normalise("a\u3000b\u2028c", one_line=True) == "a b c"


def test_emoji_joiners_survive_but_not_between_letters():
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
    assert normalise(family) == family
    assert normalise("a\u200db") == "ab"


def test_skeleton_maps_look_alikes_to_latin():
    assert skeleton("D\u0456SCORD\u3002GG") == "discord.gg"
    assert skeleton("b\u00e1d\u200bw\u043erd") == "badword"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("nul\x00 inside", "control"),
        ("escape \x1b[31m red", "control"),
        ("bell \x07", "control"),
        ("delete \x7f", "control"),
        ("c1 \x9b", "control"),
        ("\u202eevil reversed", "direction"),
        ("isolate \u2066x\u2069", "direction"),
        ("mark \u200f", "direction"),
    ],
)
def test_member_text_with_control_or_bidi_refused(text, problem):
    """Members' lines and openings refuse control characters (but newline and tab) and direction overrides."""
    assert problem in member_text_problem(text)
    assert problem in OutputFilter().member_problem(text)


def test_member_text_newline_and_tab_allowed():
    assert member_text_problem("a line\twith a tab\nand a newline") is None


def test_escape_member_text_normalises():
    assert escape_member_text("bad\u200bword  \uff41") == "badword a"
