"""Dashboard access: a Bearer token or a session cookie, and CSRF tokens for actions. Pure functions.

The cookie never holds the token itself: it holds an HMAC of a fixed label under the token, so a leaked cookie
does not reveal the token, and changing the token logs every browser out. CSRF tokens are an HMAC of the session
under the token. Every comparison is constant-time (`hmac.compare_digest`).
"""

from __future__ import annotations

import hashlib
import hmac

COOKIE = "kilroy_session"
COOKIE_MAX_AGE = 7 * 24 * 3600


def _mac(token: str, label: str) -> str:
    return hmac.new(token.encode(), label.encode(), hashlib.sha256).hexdigest()


def same(a: str, b: str) -> bool:
    """Constant-time string equality."""
    return hmac.compare_digest(a.encode(), b.encode())


def bearer_ok(header: str | None, token: str) -> bool:
    """True when an `Authorization: Bearer <token>` header carries the configured token."""
    if not token or not header:
        return False
    scheme, _, value = header.partition(" ")
    return scheme.lower() == "bearer" and same(value.strip(), token)


def session_value(token: str) -> str:
    """The cookie value a successful login sets."""
    return _mac(token, "kilroy-dashboard-session")


def session_ok(cookie: str | None, token: str) -> bool:
    """True when the session cookie was made from the configured token."""
    return bool(token) and bool(cookie) and same(cookie or "", session_value(token))


def csrf_token(token: str, session: str) -> str:
    """The CSRF token forms carry for this session."""
    return _mac(token, f"kilroy-csrf:{session}")


def csrf_ok(submitted: str | None, token: str, session: str) -> bool:
    """True when a form's CSRF token matches this session."""
    return bool(token) and bool(submitted) and same(submitted or "", csrf_token(token, session))


def cookie_attributes(*, secure: bool) -> dict[str, object]:
    """The session cookie's flags: not readable by scripts, never sent cross-site."""
    return {"httponly": True, "samesite": "Strict", "secure": secure, "path": "/", "max_age": COOKIE_MAX_AGE}


def hash_member(member_id: int, token: str) -> str:
    """A member id as the dashboard may show it: a short keyed hash, stable for one token."""
    return _mac(token or "kilroy", f"member:{member_id}")[:10]
