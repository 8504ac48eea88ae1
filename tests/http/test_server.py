"""The HTTP app end to end over a real database: health codes, metric names, dashboard access, CSRF on actions."""

from __future__ import annotations

import re

from bot.http import auth
from bot.http.health import GatewayState
from tests.http.conftest import MEMBER_BASE, TOKEN

VIEWS = ("/", "/posts", "/adapters", "/runs", "/stories")
BEARER = {"Authorization": f"Bearer {TOKEN}"}


def session_of(client) -> str:
    """The session id the client's cookie jar holds."""
    return next(c.value for c in client.session.cookie_jar if c.key == auth.COOKIE)


async def test_healthz_follows_the_gateway(app_env):
    client, _, gateway, _ = app_env
    r = await client.get("/healthz")
    body = await r.json()
    assert r.status == 200 and body["status"] == "ok" and body["database"]["ok"] and body["latency_ms"] == 42.0
    gateway.state = GatewayState(connected=False, ready=False)
    r = await client.get("/healthz")
    assert r.status == 503 and (await r.json())["failing"] == ["gateway"]


async def test_healthz_while_starting(app_env):
    client, ctx, _, _ = app_env
    ctx.health = None
    r = await client.get("/healthz")
    assert r.status == 503 and (await r.json())["failing"] == ["starting"]


async def test_metrics_names_are_prefixed_and_count_the_database(app_env):
    client, ctx, _, _ = app_env
    ctx.metrics.command("stats", "ok")
    ctx.metrics.generation(0.5, [12, 20])
    r = await client.get("/metrics")
    text = await r.text()
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
    names = {m.group(1) for m in re.finditer(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", text, flags=re.M)}
    assert names and all(n.startswith("kilroy_") for n in names), sorted(
        n for n in names if not n.startswith("kilroy_")
    )
    for expected in (
        'kilroy_posts_total{adapter="base",channel="77",kind="post"} 3.0',
        'kilroy_posts_total{adapter="v0001",channel="77",kind="post"} 3.0',
        'kilroy_commands_total{command="stats",outcome="ok"} 1.0',
        "kilroy_generation_seconds_count 1.0",
        "kilroy_generation_tokens_count 2.0",
        "kilroy_replies_total 1.0",
        'kilroy_last_training_outcome{outcome="accepted"} 1.0',
        'kilroy_serving_adapter_info{name="base"} 1.0',
        "kilroy_gateway_connected 1.0",
        "kilroy_event_loop_lag_seconds_bucket",
        "kilroy_database_bytes",
        "kilroy_reaction_events_total",
        "kilroy_generation_queue_depth 0.0",
        'kilroy_texts_refused_total{reason="blocklist"} 2.0',
        "kilroy_posts_skipped_total 1.0",
        'kilroy_trial_arm_posts{arm="candidate"} 40.0',
        'kilroy_trial_decision{decision="undecided"} 1.0',
    ):
        assert expected in text, expected


async def test_every_view_refused_without_token_and_served_with_it(app_env):
    client, *_ = app_env
    for path in VIEWS:
        r = await client.get(path)
        assert r.status == 401 and "token" in (await r.text()).lower()
        r = await client.get(path, headers={"Authorization": "Bearer wrong"})
        assert r.status == 401
        r = await client.get(path, headers=BEARER)
        html = await r.text()
        assert r.status == 200 and "<svg" in html and 'id="table"' in html, path
        assert (
            r.headers["Cache-Control"] == "no-store"
            and "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
        )


async def test_views_show_counts_never_member_ids(app_env):
    client, *_ = app_env
    for path in VIEWS:
        html = await (await client.get(path, headers=BEARER)).text()
        for member in range(MEMBER_BASE, MEMBER_BASE + 6):
            assert str(member) not in html, (path, member)


async def test_posts_filter_and_top_order(app_env):
    client, *_ = app_env
    html = await (await client.get("/posts?order=top&adapter=v0001", headers=BEARER)).text()
    rows = re.findall(r"post number (\d)", html)
    assert rows == ["5", "4", "3"]  # only v0001's posts, best first (5 voters + a reply, 4, 3)


async def test_login_form_sets_a_strict_httponly_cookie(app_env):
    client, *_ = app_env
    r = await client.post("/login", data={"token": "wrong", "next": "/"}, allow_redirects=False)
    assert r.status == 401
    r = await client.post("/login", data={"token": TOKEN, "next": "//evil.example/"}, allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == "/"
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
    r = await client.get("/runs")  # the client keeps the cookie
    assert r.status == 200 and "gate passed" in await r.text()


async def test_rollback_needs_csrf_and_is_audited(app_env):
    client, ctx, _, rolled = app_env
    await client.post("/login", data={"token": TOKEN}, allow_redirects=False)
    r = await client.post("/actions/rollback", data={}, allow_redirects=False)
    assert r.status == 403 and rolled == []
    r = await client.post("/actions/rollback", data={"csrf": "forged"}, allow_redirects=False)
    assert r.status == 403 and rolled == []
    csrf = auth.csrf_token(TOKEN, session_of(client))
    r = await client.post("/actions/rollback", data={"csrf": csrf}, allow_redirects=False)
    assert r.status == 303 and rolled == ["x"]
    trail = await ctx.dashboard.storage.audit_entries()
    assert trail[0]["action"] == "rollback" and trail[0]["actor_id"] is None
    assert trail[0]["detail"].startswith("dashboard:") and trail[0]["detail"].endswith(": ok")


async def test_no_token_means_no_dashboard_but_health_and_metrics(app_env):
    client, ctx, _, _ = app_env
    ctx.token = ""
    assert (await client.get("/", headers=BEARER)).status == 404
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/metrics")).status == 200


async def test_trial_shown_with_its_bound_and_stopped_with_csrf(app_env):
    client, ctx, _, _ = app_env
    html = await (await client.get("/adapters", headers=BEARER)).text()
    assert "candidate `v0002` against incumbent `v0001`" in html and "[-0.310, +0.550]" in html and "stop-trial" in html
    await client.post("/login", data={"token": TOKEN}, allow_redirects=False)
    r = await client.post("/actions/stop-trial", data={"csrf": "forged"}, allow_redirects=False)
    assert r.status == 403
    csrf = auth.csrf_token(TOKEN, session_of(client))
    r = await client.post("/actions/stop-trial", data={"csrf": csrf}, allow_redirects=False)
    assert r.status == 303 and "Stopped%20trial%20%233" in r.headers["Location"]
    trail = await ctx.dashboard.storage.audit_entries()
    assert trail[0]["action"] == "trial stop" and trail[0]["detail"].endswith(": ok")


# --- issue 23, item 10 ------------------------------------------------------------------------------------------------


async def test_next_with_a_tab_does_not_leave_the_site(app_env):
    """Regression: `next=/\t/evil.example` redirected to what browsers read as //evil.example."""
    client, *_ = app_env
    for target in ("/\t/evil.example", "/\\evil.example", "/\n/evil.example"):
        r = await client.post("/login", data={"token": TOKEN, "next": target}, allow_redirects=False)
        assert r.status == 303 and r.headers["Location"] == "/"
    r = await client.post("/login", data={"token": TOKEN, "next": "/posts?order=top"}, allow_redirects=False)
    assert r.headers["Location"] == "/posts?order=top"


async def test_wrong_tokens_are_throttled_and_logged_once(app_env, caplog):
    """200 guesses no longer get 200 answers: past the limit the client gets 429 without the token being checked,
    one warning per window; a session started before still works."""
    client, ctx, *_ = app_env
    await client.post("/login", data={"token": TOKEN}, allow_redirects=False)
    live = session_of(client)
    client.session.cookie_jar.clear()
    caplog.set_level("WARNING", logger="bot.http.server")
    statuses = [
        (await client.post("/login", data={"token": f"guess-{i}"}, allow_redirects=False)).status for i in range(200)
    ]
    assert statuses[: ctx.throttle.limit] == [401] * ctx.throttle.limit
    assert set(statuses[ctx.throttle.limit :]) == {429}
    r = await client.post("/login", data={"token": TOKEN}, allow_redirects=False)
    assert r.status == 429 and int(r.headers["Retry-After"]) >= 1  # even the right token waits for the window
    assert (await client.get("/", headers=BEARER)).status == 429
    assert len([rec for rec in caplog.records if "wrong token" in rec.getMessage()]) == 1
    assert (await client.get("/runs", cookies={auth.COOKIE: live})).status == 200


async def test_wrong_bearer_tokens_count_too(app_env):
    client, ctx, *_ = app_env
    for _ in range(ctx.throttle.limit):
        assert (await client.get("/", headers={"Authorization": "Bearer nope"})).status == 401
    assert (await client.get("/", headers=BEARER)).status == 429


async def test_sessions_are_random_server_side_and_logout_ends_them(app_env):
    """Each login gets its own random session; logout ends it on the server, so a copied cookie stops working."""
    client, *_ = app_env
    await client.post("/login", data={"token": TOKEN}, allow_redirects=False)
    first = session_of(client)
    await client.post("/login", data={"token": TOKEN}, allow_redirects=False)
    second = session_of(client)
    assert first != second and TOKEN not in first
    assert (await client.get("/runs", cookies={auth.COOKIE: first})).status == 200
    await client.post("/logout", cookies={auth.COOKIE: first}, allow_redirects=False)
    client.session.cookie_jar.clear()
    assert (await client.get("/runs", cookies={auth.COOKIE: first})).status == 401
    assert (await client.get("/runs", cookies={auth.COOKIE: second})).status == 200


async def test_sessions_expire_on_the_server(app_env):
    client, ctx, *_ = app_env
    now = [1000.0]
    ctx.sessions = auth.Sessions(hours=1, clock=lambda: now[0])
    r = await client.post("/login", data={"token": TOKEN}, allow_redirects=False)
    assert "Max-Age=3600" in r.headers["Set-Cookie"]
    sid = session_of(client)
    assert (await client.get("/runs", cookies={auth.COOKIE: sid})).status == 200
    now[0] += 3601
    assert (await client.get("/runs", cookies={auth.COOKIE: sid})).status == 401


async def test_secure_cookie_flag(app_env):
    client, ctx, *_ = app_env
    r = await client.post("/login", data={"token": TOKEN}, allow_redirects=False)
    assert "Secure" not in r.headers["Set-Cookie"]
    ctx.secure_cookies = True
    r = await client.post("/login", data={"token": TOKEN}, allow_redirects=False)
    assert "Secure" in r.headers["Set-Cookie"]


async def test_settings_reach_the_server():
    """KILROY_DASHBOARD_SECURE_COOKIES and KILROY_DASHBOARD_SESSION_HOURS reach the running server."""
    import socket

    from bot.config.settings import Settings
    from bot.http.metrics import Metrics
    from bot.services import _http_server as http_server

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        "KILROY_HTTP_PORT": str(port),
        "KILROY_DASHBOARD_TOKEN": TOKEN,
        "KILROY_DASHBOARD_SECURE_COOKIES": "true",
        "KILROY_DASHBOARD_SESSION_HOURS": "2",
    }
    async with http_server(Settings.from_env(env), Metrics()) as ctx:
        assert ctx.secure_cookies is True and ctx.sessions.max_age == 7200


def test_short_token_refused_at_start_with_the_fix():
    """A one-letter token was accepted; a token under 32 characters now stops the start, naming the fix (and
    never echoing the token)."""
    import pytest

    from bot.config.settings import ConfigError, Settings

    for short in ("x", "short-token-value", "a" * 31):
        with pytest.raises(ConfigError) as exc:
            Settings.from_env({"KILROY_DASHBOARD_TOKEN": short})
        message = str(exc.value)
        assert "KILROY_DASHBOARD_TOKEN" in message and "32" in message and "token_urlsafe" in message
        assert short not in message
    assert Settings.from_env({"KILROY_DASHBOARD_TOKEN": "a" * 32}).ops.dashboard_token.get() == "a" * 32
    assert not Settings.from_env({}).ops.dashboard_token


async def test_a_trial_loser_reads_accepted_never_promoted(app_env):
    """The gate's verdict is `accepted`; only a served adapter reads "promoted". A candidate that passed the gate and
    lost its A/B trial used to be labelled "promoted" (training_runs.promoted held the gate's verdict)."""
    client, ctx, _, _ = app_env
    storage = ctx.dashboard.storage
    run = await storage.start_run("nightly", at=1.0)
    await storage.commit_run(run, adapter="v0001", accepted=True, message="gate passed", metrics={}, post_ids=[])
    await storage.mark_run_trained(run, at=2.0)
    await storage.set_run_stage(run, "kept")  # the trial kept the incumbent
    runs = await (await client.get("/runs", headers=BEARER)).text()
    assert "accepted; kept, never served" in runs and "promoted" not in runs
    adapters = await (await client.get("/adapters", headers=BEARER)).text()
    row = re.search(r"<tr><td>v0001.*?</tr>", adapters, re.S)
    assert row is not None and "kept, never served" in row.group(0) and "promoted" not in row.group(0)
