"""Dashboard access: a Bearer token or a server-side session, CSRF tokens for actions, a throttle on wrong tokens,
and same-origin redirects.

A login starts a session: a random id (never derived from the token) held in memory here, with an expiry
(KILROY_DASHBOARD_SESSION_HOURS); logout ends it on the server, and a restart ends them all. CSRF tokens are an
HMAC of the session under the token. Token comparisons are constant-time (`hmac.compare_digest`). Wrong tokens are
counted per client: past a few in a window, the client is refused without the token being checked.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from urllib.parse import urlsplit

COOKIE = "kilroy_session"


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


def csrf_token(token: str, session: str) -> str:
    """The CSRF token forms carry for this session."""
    return _mac(token, f"kilroy-csrf:{session}")


def csrf_ok(submitted: str | None, token: str, session: str) -> bool:
    """True when a form's CSRF token matches this session."""
    return bool(token) and bool(submitted) and same(submitted or "", csrf_token(token, session))


def cookie_attributes(*, secure: bool, max_age: int) -> dict[str, object]:
    """The session cookie's flags: not readable by scripts, never sent cross-site, Secure behind TLS."""
    return {"httponly": True, "samesite": "Strict", "secure": secure, "path": "/", "max_age": max_age}


def hash_member(member_id: int, token: str) -> str:
    """A member id as the dashboard may show it: a short keyed hash, stable for one token."""
    return _mac(token or "kilroy", f"member:{member_id}")[:10]


# a path on this site and nothing else: no scheme, no host, no backslash, no whitespace or control characters
# (browsers drop tabs and newlines from a URL, so `/\t/evil.example` would become `//evil.example`)
_SAME_ORIGIN = re.compile(r"/(?![/\\])[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*")


def safe_next(target: str | None) -> str:
    """`target` if it is a path on this site, else `/`: a login never redirects off-site."""
    if not target or not _SAME_ORIGIN.fullmatch(target):
        return "/"
    parts = urlsplit(target)
    return "/" if parts.scheme or parts.netloc else target


class Sessions:
    """Server-side sessions: random ids with an expiry, ended by logout. Bounded: the oldest go first when full."""

    def __init__(
        self, hours: float = 168.0, *, clock: Callable[[], float] = time.time, max_sessions: int = 1000
    ) -> None:
        self.seconds = hours * 3600
        self.clock = clock
        self.max_sessions = max_sessions
        self._until: dict[str, float] = {}  # insertion-ordered: oldest first

    @property
    def max_age(self) -> int:
        """The cookie's lifetime in seconds (the same as the session's)."""
        return max(1, int(self.seconds))

    def start(self) -> str:
        """A new session id (256 random bits)."""
        now = self.clock()
        for sid in [s for s, until in self._until.items() if until <= now]:
            del self._until[sid]
        while len(self._until) >= self.max_sessions:
            del self._until[next(iter(self._until))]
        sid = secrets.token_urlsafe(32)
        self._until[sid] = now + self.seconds
        return sid

    def valid(self, sid: str | None) -> bool:
        """True for a session that was started here, has not expired and was not ended."""
        if not sid:
            return False
        until = self._until.get(sid)
        if until is None:
            return False
        if until <= self.clock():
            del self._until[sid]
            return False
        return True

    def end(self, sid: str | None) -> None:
        """End a session (logout); unknown ids are ignored."""
        if sid:
            self._until.pop(sid, None)

    def __len__(self) -> int:
        return len(self._until)


class Throttle:
    """Wrong tokens per client: after `limit` in a `window`, the client is refused until the window ends.

    `failed` says whether a failure is the first of its window, so the caller logs once per window, not per guess.
    """

    def __init__(
        self,
        limit: int = 10,
        window: float = 60.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = 10_000,
    ) -> None:
        self.limit, self.window, self.clock, self.max_clients = limit, window, clock, max_clients
        self._seen: dict[str, tuple[float, int]] = {}  # client -> (window start, failures in it)

    def _current(self, client: str) -> tuple[float, int]:
        start, count = self._seen.get(client, (0.0, 0))
        if self.clock() - start >= self.window:
            return self.clock(), 0
        return start, count

    def retry_after(self, client: str) -> float | None:
        """Seconds until this client may try a token again, or None if it may now."""
        start, count = self._current(client)
        if count < self.limit:
            return None
        return max(0.0, start + self.window - self.clock())

    def failed(self, client: str) -> bool:
        """Count a wrong token from this client; True if it is the first in its window."""
        start, count = self._current(client)
        if client not in self._seen and len(self._seen) >= self.max_clients:
            now = self.clock()
            for key in [k for k, (s, _) in self._seen.items() if now - s >= self.window]:
                del self._seen[key]
            while len(self._seen) >= self.max_clients:
                del self._seen[next(iter(self._seen))]
        self._seen[client] = (start, count + 1)
        return count == 0
