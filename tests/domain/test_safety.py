"""The pure output filter, mention escaping, the server allowlist and bounded cooldowns (bot/domain/safety.py)."""

import pytest

from bot.domain.safety import ZWSP, Cooldowns, OutputFilter, escape_member_text, guild_allowed, neutralise_mentions


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
