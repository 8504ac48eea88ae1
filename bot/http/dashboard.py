"""What each dashboard view shows, assembled from storage and the adapter store; no HTTP here.

Every view returns a plain dict for its template, with one chart (inline SVG drawn off the loop) and one table.
Views take `community` ("g123", "commons"; None: all): posts are that server's (the commons: those written by a
commons adapter), runs and versions that lineage's, and "serving" is what serves that community. Actions (rollback,
stop the trial) act on the commons and are offered in the unfiltered view only.
Members appear only as counts: the queries group by member to apply the scoring formula and return counts, so a
member who asked to be forgotten (their rows deleted) cannot appear.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot.http import charts
from bot.storage.ops import day_of

if TYPE_CHECKING:
    from bot.adapters.lineages import Lineages
    from bot.adapters.store import AdapterStore
    from bot.domain.scoring import ScoreFormula
    from bot.storage import Storage

_VERSION = re.compile(r"^v(\d+)$")

STAGE_TEXT = {
    "committed": "being promoted",
    "marked": "being promoted",
    "swapped": "being promoted",
    "promoted": "promoted (served)",
    "trial": "on A/B trial",
    "kept": "kept, never served",
    "refused": "failed to load, never served",
}
"""A run's promotion stage in words: whether its adapter served. The gate's verdict is the separate `accepted`."""


@dataclass
class DashboardDeps:
    """The services the dashboard reads, and the actions it may take."""

    storage: Storage
    store: AdapterStore
    formula: ScoreFormula
    serving: Callable[[], str]
    rollback: Callable[[], Awaitable[str]] | None = None
    trial: Callable[[], Awaitable[Any]] | None = None  # the running (or last) trial's status: .text(), .trial.active
    stop_trial: Callable[[], Awaitable[Any]] | None = None
    clock: Callable[[], float] = time.time
    key: str = ""  # keys the member hashes shown (the dashboard token)
    lineages: Lineages | None = None  # per-community views (None: one flat store)


def communities_of(deps: DashboardDeps) -> list[str]:
    """The communities the filter offers."""
    return deps.lineages.communities() if deps.lineages is not None else []


def _store(deps: DashboardDeps, community: str | None) -> AdapterStore:
    return deps.store if community is None or deps.lineages is None else deps.lineages.store(community)


def _serving(deps: DashboardDeps, community: str | None) -> str:
    return deps.serving() if community is None or deps.lineages is None else deps.lineages.serving(community)


def _of(community: str | None, guild_id: int | None, adapter: str) -> bool:
    """Does a post belong to the community's view? (a server's: its posts; the commons': its adapters')"""
    if community is None:
        return True
    if community == "commons":
        return adapter.startswith("commons/")
    return guild_id is not None and f"g{guild_id}" == community


def adapter_switches(posts: list[tuple[float, str]]) -> list[tuple[str, str, str]]:
    """(day, label, kind) for each change of serving adapter in time-ordered (created_at, adapter) pairs.

    A switch to a newer version is a promotion; to an older one (or to base) a rollback.
    """
    out: list[tuple[str, str, str]] = []
    previous: str | None = None
    for at, adapter in posts:
        if previous is not None and adapter != previous:
            kind = "promotion" if _order(adapter) > _order(previous) else "rollback"
            out.append((day_of(at), f"{'↑' if kind == 'promotion' else '↓'} {adapter}", kind))
        previous = adapter
    return out


def _order(name: str) -> int:
    m = _VERSION.match(name)
    return int(m.group(1)) if m else (0 if name == "base" else -1)


def days_between(first: float, last: float) -> list[str]:
    """Every UTC day from `first` to `last`, inclusive."""
    out, t = [], first - first % 86400
    while t <= last:
        out.append(day_of(t))
        t += 86400
    return out


def _fmt_time(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts))


async def overview(deps: DashboardDeps, *, days: int = 30, community: str | None = None) -> dict[str, Any]:
    """What serves now, engagement and posts per day with switches marked, last night's result."""
    now = deps.clock()
    posts = await deps.storage.scored_posts(deps.formula, since=now - days * 86400, limit=None)
    posts = [p for p in posts if _of(community, p.guild_id, p.adapter)]
    posts.sort(key=lambda p: (p.created_at, p.id))
    by_day: dict[str, list[float]] = defaultdict(list)
    for p in posts:
        if p.kind == "post":
            by_day[day_of(p.created_at)].append(p.score)
    x = days_between(posts[0].created_at, now) if posts else []
    means = [sum(by_day[d]) / len(by_day[d]) if by_day.get(d) else None for d in x]
    counts = [len(by_day.get(d, [])) for d in x]
    switches = adapter_switches([(p.created_at, p.adapter) for p in posts if p.kind == "post"])
    engagement, per_day = await asyncio.gather(
        charts.render(
            charts.line_chart,
            x,
            {"mean score": means},
            title="Engagement per day",
            ylabel="mean score",
            markers=switches,
        ),
        charts.render(charts.bar_chart, [d[5:] for d in x], counts, title="Posts per day", ylabel="posts"),
    )
    runs = await deps.storage.runs(1, community=community)
    return {
        "serving": _serving(deps, community),
        "last_run": _run_row(runs[0]) if runs else None,
        "chart": engagement,
        "chart2": per_day,
        "switches": switches,
        "table": [
            {"day": d, "posts": c, "mean": "-" if m is None else f"{m:.2f}"}
            for d, c, m in reversed(list(zip(x, counts, means, strict=True)))
        ][:14],
        "total_posts": len(posts),
        "days": days,
        "trial": await trial_view(deps) if community is None else None,
    }


async def posts_view(
    deps: DashboardDeps,
    *,
    order: str = "recent",
    channel: int | None = None,
    adapter: str | None = None,
    days: int = 30,
    community: str | None = None,
) -> dict[str, Any]:
    """Recent or top posts, filterable by channel, adapter and community, with the mean score per adapter."""
    since = deps.clock() - days * 86400
    rows = await deps.storage.scored_posts(
        deps.formula, since=since, channel_id=channel, adapter=adapter, order=order, limit=None
    )
    rows = [p for p in rows if _of(community, p.guild_id, p.adapter)]
    per_adapter: dict[str, list[float]] = defaultdict(list)
    for p in rows:
        per_adapter[p.adapter].append(p.score)
    names = sorted(per_adapter, key=lambda n: (_order(n), n))
    chart = await charts.render(
        charts.bar_chart,
        names,
        [sum(per_adapter[n]) / len(per_adapter[n]) for n in names],
        title=f"Mean score per adapter ({len(rows)} posts, {days} days)",
        ylabel="mean score",
    )
    table = [
        {
            "time": _fmt_time(p.created_at),
            "channel": p.channel_id,
            "adapter": p.adapter,
            "arm": p.arm or "-",
            "kind": p.kind,
            "score": f"{p.score:.1f}",
            "voters": p.voters,
            "repliers": p.repliers,
            "text": p.text,
        }
        for p in rows[:100]
    ]
    return {
        "chart": chart,
        "table": table,
        "order": order,
        "channel": channel or "",
        "adapter": adapter or "",
        "days": days,
        "channels": sorted({p.channel_id for p in rows}),
        "adapters": names,
    }


async def adapters_view(deps: DashboardDeps, *, community: str | None = None) -> dict[str, Any]:
    """Every version (of the community's lineage) with its gate verdict and metrics; the running trial."""
    store = _store(deps, community)
    infos = await asyncio.to_thread(store.list)
    runs = await deps.storage.adapter_history()
    if community is not None:  # versions are numbered per lineage: only this lineage's runs name them
        runs = [h for h in runs if h.get("community") == community]
    history = {h["name"]: h for h in reversed(runs)}  # the newest run wins
    table = []
    for info in infos:
        m = info.metrics or {}
        h = history.get(info.name, {})
        gate = info.meta.get("gate") or h.get("message") or ("-" if info.name == "base" else "")
        accepted = h.get("accepted", info.meta.get("accepted"))
        table.append(
            {
                "name": info.name,
                "active": info.active,
                "created": _fmt_time(info.created_at),
                "parent": info.parent or "-",
                "accepted": "-" if accepted is None else ("yes" if accepted else "no"),
                "outcome": STAGE_TEXT.get(h.get("stage") or "", "-"),
                "gate": gate,
                "kl": _num(m.get("kl")),
                "distinct2": _num(m.get("distinct2")),
                "repeat3": _num(m.get("repeat3")),
            }
        )
    versions = [r for r in table if r["name"] != "base"]
    chart = await charts.render(
        charts.line_chart,
        [r["name"] for r in versions],
        {
            "KL to base": [infos_metric(infos, r["name"], "kl") for r in versions],
            "distinct-2": [infos_metric(infos, r["name"], "distinct2") for r in versions],
            "repeat3": [infos_metric(infos, r["name"], "repeat3") for r in versions],
        },
        title="Adapter versions: KL, diversity, repetition",
        ylabel="value",
    )
    return {
        "chart": chart,
        "table": list(reversed(table)),
        "serving": _serving(deps, community),
        "trial": await trial_view(deps) if community is None else None,
        "can_rollback": community is None and deps.rollback is not None and deps.store.previous() is not None,
        "audit": [
            {
                "when": _fmt_time(e["at"]),
                # an operator's Discord id is shown only as their label (the keyed hash trial decisions hold too)
                "who": e["actor"],
                "action": e["action"],
                "detail": e["detail"],
            }
            for e in await deps.storage.audit_entries(20)
        ],
    }


async def trial_view(deps: DashboardDeps) -> dict[str, Any] | None:
    """The running (or last) A/B trial: its lines of figures (arms, estimate, bound, evidence) and whether it runs."""
    if deps.trial is None:
        return None
    status = await deps.trial()
    if status is None:
        return None
    return {
        "lines": status.text().splitlines(),
        "active": bool(status.trial.active),
        "can_stop": deps.stop_trial is not None,
    }


def infos_metric(infos: list[Any], name: str, key: str) -> float | None:
    """One metric of one adapter version, or None."""
    for info in infos:
        if info.name == name:
            value = (info.metrics or {}).get(key)
            return float(value) if isinstance(value, int | float) else None
    return None


def _num(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else "-"


def _run_row(r: Any) -> dict[str, Any]:
    seconds = None if r.finished_at is None else r.finished_at - r.started_at
    outcome = r.status
    if r.status == "done":
        gate = "accepted" if r.accepted else "refused by the gate"
        outcome = f"{gate}; {STAGE_TEXT.get(r.stage, r.stage)}"
    return {
        "id": r.id,
        "when": _fmt_time(r.started_at),
        "reason": r.reason,
        "duration": "-" if seconds is None else f"{seconds:.0f}s",
        "seconds": seconds or 0.0,
        "outcome": outcome,
        "adapter": (f"{r.community}/{r.adapter}" if r.community and r.adapter else r.adapter) or "-",
        "message": r.message or "",
    }


async def runs_view(deps: DashboardDeps, *, community: str | None = None) -> dict[str, Any]:
    """Training runs (of one community's lineage): when, why, how long, the outcome and its reason."""
    rows = [_run_row(r) for r in await deps.storage.runs(100, community=community)]
    ordered = list(reversed(rows))
    chart = await charts.render(
        charts.bar_chart,
        [f"#{r['id']}" for r in ordered],
        [r["seconds"] for r in ordered],
        title="Training run durations",
        ylabel="seconds",
    )
    return {"chart": chart, "table": rows}


async def stories_view(deps: DashboardDeps) -> dict[str, Any]:
    """Story transcripts, newest first."""
    stories = await deps.storage.stories_with_lines(20)
    ordered = list(reversed(stories))
    chart = await charts.render(
        charts.bar_chart,
        [f"#{s['id']}" for s in ordered],
        [len(s["lines"]) for s in ordered],
        title="Lines per story",
        ylabel="lines",
    )
    for s in stories:
        s["started"] = _fmt_time(s["started_at"])
        s["state"] = "running" if s["ended_at"] is None else "ended"
    return {"chart": chart, "table": stories}
