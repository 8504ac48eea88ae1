"""Token, cookie and CSRF checks (pure)."""

from __future__ import annotations

from bot.http import auth


def test_bearer_missing_wrong_right():
    assert not auth.bearer_ok(None, "tok")
    assert not auth.bearer_ok("Bearer nope", "tok")
    assert not auth.bearer_ok("Basic tok", "tok")
    assert not auth.bearer_ok("Bearer tok", "")  # no token configured: nobody gets in
    assert auth.bearer_ok("Bearer tok", "tok") and auth.bearer_ok("bearer  tok ", "tok")


def test_session_cookie_is_not_the_token_and_changes_with_it():
    value = auth.session_value("tok")
    assert "tok" not in value and auth.session_ok(value, "tok")
    assert not auth.session_ok(value, "other") and not auth.session_ok(None, "tok") and not auth.session_ok(value, "")


def test_cookie_flags():
    attrs = auth.cookie_attributes(secure=False)
    assert attrs["httponly"] is True and attrs["samesite"] == "Strict" and attrs["path"] == "/"


def test_csrf_bound_to_session_and_token():
    s = auth.session_value("tok")
    t = auth.csrf_token("tok", s)
    assert auth.csrf_ok(t, "tok", s)
    assert not auth.csrf_ok(t, "tok", "another-session") and not auth.csrf_ok("", "tok", s)
    assert not auth.csrf_ok(t, "other", s)


def test_member_hash_is_short_and_hides_the_id():
    h = auth.hash_member(123456789012345678, "tok")
    assert len(h) == 10 and "123456789" not in h and h == auth.hash_member(123456789012345678, "tok")
