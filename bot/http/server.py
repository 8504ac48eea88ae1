"""The aiohttp application: /healthz, /metrics, the dashboard, and its start/stop inside `kilroy run`.

`HttpContext` is filled in as the bot comes up: health and dashboard sources are None while the model loads (then
/healthz answers 503 "starting"), and are set once the services exist. Nothing here imports discord.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

from bot.domain.community import is_community
from bot.http import auth, dashboard as views
from bot.http.dashboard import DashboardDeps
from bot.http.health import HealthSources, check_health
from bot.http.metrics import CONTENT_TYPE, Metrics, Snapshot, watch_loop_lag

log = logging.getLogger(__name__)

VIEWS = (("/", "overview"), ("/posts", "posts"), ("/adapters", "adapters"), ("/runs", "runs"), ("/stories", "stories"))


@dataclass
class HttpContext:
    """What the HTTP app reads; the bot fills it in as it starts."""

    metrics: Metrics
    token: str = ""
    health: HealthSources | None = None
    dashboard: DashboardDeps | None = None
    snapshot: Callable[[], Awaitable[Snapshot]] | None = None
    secure_cookies: bool = False  # KILROY_DASHBOARD_SECURE_COOKIES: the cookie only travels over HTTPS
    health_timeout: float = 2.0
    started_at: float = field(default_factory=time.time)
    sessions: auth.Sessions = field(default_factory=auth.Sessions)  # KILROY_DASHBOARD_SESSION_HOURS
    throttle: auth.Throttle = field(default_factory=auth.Throttle)


CTX = web.AppKey("ctx", HttpContext)


def build_app(ctx: HttpContext) -> web.Application:
    """The application; testable with aiohttp's test client, no Discord needed."""
    app = web.Application(middlewares=[_security_headers])
    app[CTX] = ctx
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("bot.http", "templates"),
        autoescape=jinja2.select_autoescape(["html"], default=True),
    )
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_post("/actions/rollback", action_rollback)
    app.router.add_post("/actions/stop-trial", action_stop_trial)
    for path, name in VIEWS:
        app.router.add_get(path, _view(name), name=name)
    return app


@web.middleware
async def _security_headers(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    response = await handler(request)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    if response.content_type == "text/html":
        # everything is server-rendered: no scripts at all, styles inline (the SVG charts carry theirs)
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; "
            "frame-ancestors 'none'",
        )
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("Cache-Control", "no-store")
    return response


# --- health and metrics -----------------------------------------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    """Readiness as JSON: 200 when every part is ok, 503 naming the failing parts."""
    ctx = request.app[CTX]
    report = await check_health(ctx.health, timeout=ctx.health_timeout)
    return web.json_response(report.body, status=report.status_code, headers={"Cache-Control": "no-store"})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition."""
    ctx = request.app[CTX]
    gateway = adapter = queue = None
    if ctx.health is not None:
        with contextlib.suppress(Exception):
            gateway = ctx.health.gateway()
        with contextlib.suppress(Exception):
            queue = int(ctx.health.queue())
    if ctx.dashboard is not None:
        with contextlib.suppress(Exception):
            adapter = ctx.dashboard.serving()
    await ctx.metrics.refresh(ctx.snapshot, adapter=adapter, queue=queue, gateway=gateway)
    return web.Response(body=ctx.metrics.render(), headers={"Content-Type": CONTENT_TYPE})


# --- dashboard access -------------------------------------------------------------------------------------------------


def _access(request: web.Request) -> tuple[web.Response | None, str | None]:
    """(refusal, session): refusal is None when the request may see the dashboard; session is the cookie's
    session id, or None for a Bearer request. A live session is never throttled; a token is checked only while
    the client is under the wrong-token limit."""
    ctx = request.app[CTX]
    cookie = request.cookies.get(auth.COOKIE)
    if ctx.sessions.valid(cookie):
        return None, cookie
    header = request.headers.get("Authorization")
    if header is None:
        return _refused(request), None
    if (wait := ctx.throttle.retry_after(_client(request))) is not None:
        return _too_many(wait), None
    if auth.bearer_ok(header, ctx.token):
        return None, None
    _wrong_token(request, "bearer")
    return _refused(request), None


def _client(request: web.Request) -> str:
    return request.remote or "unknown"


def _wrong_token(request: web.Request, how: str) -> None:
    """Count a wrong token from this client; log the first of each window only."""
    throttle = request.app[CTX].throttle
    if throttle.failed(_client(request)):
        log.warning(
            "dashboard: wrong token (%s) from %s; more from it in the next %.0f s are not logged, and past %d it is "
            "refused until then",
            how,
            _client(request),
            throttle.window,
            throttle.limit,
        )


def _too_many(wait: float) -> web.Response:
    return web.Response(
        status=429,
        text=f"Too many wrong tokens from this address: try again in {wait:.0f} s.\n",
        headers={"Retry-After": str(max(1, round(wait)))},
    )


def _disabled() -> web.Response:
    return web.Response(
        status=404,
        text="The dashboard is off: set KILROY_DASHBOARD_TOKEN to enable it (/healthz and /metrics still answer).\n",
    )


def _refused(request: web.Request, error: str = "") -> web.Response:
    response = aiohttp_jinja2.render_template(
        "login.html", request, {"error": error, "next": request.path_qs}, status=401
    )
    response.headers["WWW-Authenticate"] = 'Bearer realm="kilroy"'
    return response


async def login_form(request: web.Request) -> web.Response:
    """The login form."""
    if not request.app[CTX].token:
        return _disabled()
    return aiohttp_jinja2.render_template("login.html", request, {"error": "", "next": "/"})


async def login(request: web.Request) -> web.Response:
    """Check the submitted token; on success set the session cookie and go to the dashboard."""
    ctx = request.app[CTX]
    if not ctx.token:
        return _disabled()
    if (wait := ctx.throttle.retry_after(_client(request))) is not None:
        return _too_many(wait)  # the token is not even checked
    form = await request.post()
    submitted = str(form.get("token", ""))
    if not auth.same(submitted, ctx.token):
        _wrong_token(request, "login form")
        return _refused(request, "That token is not right.")
    response = web.HTTPSeeOther(auth.safe_next(str(form.get("next") or "/")))  # never off-site
    attributes = auth.cookie_attributes(secure=ctx.secure_cookies, max_age=ctx.sessions.max_age)
    response.set_cookie(auth.COOKIE, ctx.sessions.start(), **attributes)  # type: ignore[arg-type]
    raise response


async def logout(request: web.Request) -> web.Response:
    """End the session on the server and forget its cookie."""
    request.app[CTX].sessions.end(request.cookies.get(auth.COOKIE))
    response = web.HTTPSeeOther("/login")
    response.del_cookie(auth.COOKIE, path="/")
    raise response


# --- views ------------------------------------------------------------------------------------------------------------


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def _view(name: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        ctx = request.app[CTX]
        if not ctx.token:
            return _disabled()
        refusal, session = _access(request)
        if refusal is not None:
            return refusal
        if ctx.dashboard is None:
            return web.Response(status=503, text="Kilroy is starting; the dashboard answers once it is up.\n")
        q = request.query
        days = max(1, min(_int(q.get("days")) or 30, 3650))
        community = q.get("community") or None  # ?community=g123: one server's (or the commons') view
        if community is not None and not is_community(community):
            return web.Response(status=400, text="community: use g<server id> or commons\n")
        if name == "overview":
            data = await views.overview(ctx.dashboard, days=days, community=community)
        elif name == "posts":
            order = "top" if q.get("order") == "top" else "recent"
            data = await views.posts_view(
                ctx.dashboard,
                order=order,
                channel=_int(q.get("channel")),
                adapter=q.get("adapter") or None,
                days=days,
                community=community,
            )
        elif name == "adapters":
            data = await views.adapters_view(ctx.dashboard, community=community)
        elif name == "runs":
            data = await views.runs_view(ctx.dashboard, community=community)
        else:
            data = await views.stories_view(ctx.dashboard)
        page: dict[str, Any] = {
            "view": name,
            "views": VIEWS,
            "csrf": auth.csrf_token(ctx.token, session) if session else "",
            "bearer": session is None,
            "notice": q.get("notice", ""),
            "community": community or "",
            "communities": views.communities_of(ctx.dashboard),
            **data,
        }
        return aiohttp_jinja2.render_template(f"{name}.html", request, page)

    handler.__doc__ = f"The {name} view."
    return handler


async def _authorised_action(request: web.Request) -> web.Response | None:
    """None when this POST may act (token or session, and for a browser session the CSRF token); else the refusal."""
    ctx = request.app[CTX]
    if not ctx.token:
        return _disabled()
    refusal, session = _access(request)
    if refusal is not None:
        return refusal
    form = await request.post()
    if session is not None and not auth.csrf_ok(str(form.get("csrf", "")), ctx.token, session):
        return web.Response(status=403, text="Missing or wrong CSRF token: reload the page and try again.\n")
    if ctx.dashboard is None:
        return web.Response(status=503, text="Kilroy is starting; try again shortly.\n")
    return None


async def _act(request: web.Request, action: str, run: Callable[[], Awaitable[str]]) -> web.Response:
    """Run an operator action, record it in the audit trail, and go back to the adapters view with the outcome."""
    deps = request.app[CTX].dashboard
    assert deps is not None
    try:
        notice = await run()
        outcome = "ok"
    except Exception as exc:
        outcome, notice = f"failed: {exc}", f"{action} failed: {exc}"
        log.warning("dashboard %s failed", action, exc_info=True)
    await deps.storage.add_audit(
        action, actor_id=None, guild_id=None, detail=f"dashboard: {notice}: {outcome}", at=deps.clock()
    )
    raise web.HTTPSeeOther(f"/adapters?notice={_quote(notice)}")


async def action_rollback(request: web.Request) -> web.Response:
    """Roll the serving adapter back (POST, CSRF-checked for browser sessions); lands in the audit trail."""
    if (refusal := await _authorised_action(request)) is not None:
        return refusal
    deps = request.app[CTX].dashboard
    assert deps is not None
    if deps.rollback is None:
        return web.Response(status=503, text="Rollback is not available now.\n")
    rollback = deps.rollback

    async def run() -> str:
        before = deps.serving()
        return f"Rolled back from {before} to {await rollback()}."

    return await _act(request, "rollback", run)


async def action_stop_trial(request: web.Request) -> web.Response:
    """Stop the running A/B trial, keeping the incumbent (POST, CSRF-checked); lands in the audit trail."""
    if (refusal := await _authorised_action(request)) is not None:
        return refusal
    deps = request.app[CTX].dashboard
    assert deps is not None
    if deps.stop_trial is None:
        return web.Response(status=503, text="Trials are not available.\n")
    stop = deps.stop_trial

    async def run() -> str:
        trial = await stop()
        return f"Stopped trial #{trial.id}; {trial.incumbent} keeps serving."

    return await _act(request, "trial stop", run)


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


# --- lifecycle --------------------------------------------------------------------------------------------------------


class HttpServer:
    """Runs the app on host:port, plus the event-loop lag watcher; `async with` starts and stops it."""

    def __init__(self, ctx: HttpContext, host: str, port: int) -> None:
        self.ctx, self.host, self.port = ctx, host, port
        self._runner: web.AppRunner | None = None
        self._lag: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Bind and serve; raises OSError when the port is taken."""
        self._runner = web.AppRunner(build_app(self.ctx), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._lag = asyncio.create_task(watch_loop_lag(self.ctx.metrics), name="kilroy-loop-lag")
        log.info(
            "HTTP on http://%s:%d (/healthz, /metrics%s)",
            self.host,
            self.port,
            ", dashboard at /" if self.ctx.token else "; no dashboard: KILROY_DASHBOARD_TOKEN is empty",
        )

    async def stop(self) -> None:
        """Stop serving (open requests get a moment to finish)."""
        if self._lag is not None:
            self._lag.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lag
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> HttpServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
