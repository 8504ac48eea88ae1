"""Token, cookie and CSRF checks (pure)."""

from __future__ import annotations

import pytest

from bot.http import auth


def test_bearer_missing_wrong_right():
    assert not auth.bearer_ok(None, "tok")
    assert not auth.bearer_ok("Bearer nope", "tok")
    assert not auth.bearer_ok("Basic tok", "tok")
    assert not auth.bearer_ok("Bearer tok", "")  # no token configured: nobody gets in
    assert auth.bearer_ok("Bearer tok", "tok") and auth.bearer_ok("bearer  tok ", "tok")


def test_cookie_flags():
    attrs = auth.cookie_attributes(secure=False, max_age=3600)
    assert attrs["httponly"] is True and attrs["samesite"] == "Strict" and attrs["path"] == "/"
    assert attrs["max_age"] == 3600 and attrs["secure"] is False
    assert auth.cookie_attributes(secure=True, max_age=60)["secure"] is True


def test_csrf_bound_to_session_and_token():
    s = auth.Sessions().start()
    t = auth.csrf_token("tok", s)
    assert auth.csrf_ok(t, "tok", s)
    assert not auth.csrf_ok(t, "tok", "another-session") and not auth.csrf_ok("", "tok", s)
    assert not auth.csrf_ok(t, "other", s)


def test_member_hash_is_short_and_hides_the_id():
    h = auth.hash_member(123456789012345678, "tok")
    assert len(h) == 10 and "123456789" not in h and h == auth.hash_member(123456789012345678, "tok")


# --- issue 23, item 10: same-origin redirects, server-side sessions, a throttle on wrong tokens -----------------------


@pytest.mark.parametrize("target", ["/", "/posts", "/posts?order=top&days=7", "/adapters?notice=rolled%20back"])
def test_next_keeps_paths_on_this_site(target):
    assert auth.safe_next(target) == target


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example",
        "/\t/evil.example",  # browsers drop the tab: //evil.example
        "/\n/evil.example",
        "/\r\n/evil.example",
        "/\\evil.example",  # browsers read a backslash as a slash
        "\\\\evil.example",
        "https://evil.example/",
        "javascript:alert(1)",
        " /posts",
        "posts",
        "",
        None,
        "/\u2028/evil.example",
    ],
)
def test_next_never_leaves_the_site(target):
    assert auth.safe_next(target) == "/"


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_sessions_are_random_and_end():
    sessions = auth.Sessions()
    a, b = sessions.start(), sessions.start()
    assert a != b and len(a) >= 43 and sessions.valid(a) and sessions.valid(b)
    sessions.end(a)
    assert not sessions.valid(a) and sessions.valid(b)
    assert not sessions.valid(None) and not sessions.valid("") and not sessions.valid("made-up")


def test_sessions_expire_on_the_server():
    clock = Clock()
    sessions = auth.Sessions(hours=2, clock=clock)
    sid = sessions.start()
    assert sessions.max_age == 7200
    clock.now += 7199
    assert sessions.valid(sid)
    clock.now += 2
    assert not sessions.valid(sid)


def test_sessions_memory_is_bounded():
    sessions = auth.Sessions(max_sessions=10)
    ids = [sessions.start() for _ in range(100)]
    assert len(sessions) <= 10 and sessions.valid(ids[-1]) and not sessions.valid(ids[0])


def test_throttle_limits_per_client_and_reports_the_first_of_a_window():
    clock = Clock()
    throttle = auth.Throttle(limit=3, window=60, clock=clock)
    assert [throttle.failed("a") for _ in range(3)] == [True, False, False]
    assert throttle.retry_after("a") == 60 and throttle.retry_after("b") is None
    clock.now += 30
    assert throttle.retry_after("a") == 30
    clock.now += 30
    assert throttle.retry_after("a") is None and throttle.failed("a") is True


def test_throttle_memory_is_bounded():
    throttle = auth.Throttle(max_clients=50)
    for client in range(1000):
        throttle.failed(str(client))
    assert len(throttle._seen) <= 50
