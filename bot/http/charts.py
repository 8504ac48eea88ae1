"""Dashboard charts as inline SVG, drawn by matplotlib on the server (no JavaScript, no internet).

The functions are synchronous and pure (data in, SVG text out); the dashboard calls them through `render()`, which
runs them in a worker thread so that drawing never blocks the event loop. Figures are built with the object API
(`matplotlib.figure.Figure`), never pyplot, so nothing global is touched; one lock serialises drawing anyway,
because matplotlib's font cache and text layout are not documented as thread-safe.
"""

from __future__ import annotations

import asyncio
import io
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

_LOCK = threading.Lock()
COLORS = ("#1f6feb", "#d97706", "#16a34a", "#dc2626", "#7c3aed", "#0891b2", "#65a30d", "#db2777")


def _figure() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.0, 2.8), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", alpha=0.3)
    return fig, ax


def _svg(fig: Any) -> str:
    fig.tight_layout()
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg") :]  # drop the XML prologue and doctype: the SVG goes inline in the page


def _empty(ax: Any, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="#666")
    ax.set_xticks([])
    ax.set_yticks([])


def _short(label: str) -> str:
    """Days lose their year (2026-11-25 -> 11-25); other labels stay."""
    return label[5:] if len(label) == 10 and label[4] == "-" and label[7] == "-" else label


def line_chart(
    x: Sequence[str],
    series: dict[str, Sequence[float | None]],
    *,
    title: str,
    ylabel: str,
    markers: Sequence[tuple[str, str, str]] = (),
) -> str:
    """Lines over categorical x (days); `markers` are (x, label, kind) vertical lines, kind 'promotion'/'rollback'."""
    with _LOCK:
        fig, ax = _figure()
        ax.set_title(title, loc="left", fontsize=11)
        if not x:
            _empty(ax, "no data yet")
            return _svg(fig)
        pos = {d: i for i, d in enumerate(x)}
        for i, (name, ys) in enumerate(series.items()):
            pts = [(j, y) for j, y in enumerate(ys) if y is not None]
            if pts:
                ax.plot(
                    [p[0] for p in pts],
                    [p[1] for p in pts],
                    marker="o",
                    ms=3,
                    lw=1.5,
                    label=name,
                    color=COLORS[i % len(COLORS)],
                )
        for day, label, kind in markers:
            if day in pos:
                color = "#16a34a" if kind == "promotion" else "#dc2626"
                ax.axvline(pos[day], color=color, ls="--", lw=1, alpha=0.8)
                ax.annotate(
                    label,
                    (pos[day], 1.0),
                    xycoords=("data", "axes fraction"),
                    fontsize=7,
                    color=color,
                    rotation=90,
                    va="top",
                    ha="right",
                )
        step = max(1, len(x) // 10)
        ax.set_xticks(range(0, len(x), step))
        ax.set_xticklabels([_short(x[i]) for i in range(0, len(x), step)], fontsize=8)
        ax.set_ylabel(ylabel, fontsize=9)
        if len(series) > 1:
            ax.legend(fontsize=7, frameon=False, ncols=min(4, len(series)))
        return _svg(fig)


def bar_chart(labels: Sequence[str], values: Sequence[float], *, title: str, ylabel: str) -> str:
    """Bars over categorical labels."""
    with _LOCK:
        fig, ax = _figure()
        ax.set_title(title, loc="left", fontsize=11)
        if not labels:
            _empty(ax, "no data yet")
            return _svg(fig)
        ax.bar(range(len(labels)), values, color=COLORS[0])
        if all(float(v).is_integer() for v in values):
            ax.yaxis.get_major_locator().set_params(integer=True)  # counts: no half posts on the axis
        step = max(1, len(labels) // 12)
        ax.set_xticks(range(0, len(labels), step))
        ax.set_xticklabels([labels[i] for i in range(0, len(labels), step)], fontsize=8)
        ax.set_ylabel(ylabel, fontsize=9)
        return _svg(fig)


async def render(fn: Callable[..., str], *args: Any, **kwargs: Any) -> str:
    """Draw a chart off the event loop."""
    return await asyncio.to_thread(fn, *args, **kwargs)


def daily_scores_png(days: Sequence[str], means: Sequence[float], adapters: Sequence[str], path: Path) -> Path:
    """/stats' picture: mean score per day, one colour per adapter version, written atomically as a PNG."""
    with _LOCK:
        fig, ax = _figure()
        fig.set_size_inches(7, 4)
        names = list(dict.fromkeys(adapters))
        for i, name in enumerate(names):
            xs = [j for j, a in enumerate(adapters) if a == name]
            ax.bar(xs, [means[j] for j in xs], label=name, color=COLORS[i % len(COLORS)])
        ax.set_xticks(range(len(days)), days, rotation=45, ha="right")
        ax.set_ylabel("mean score per post")
        ax.legend(title="adapter")
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.tmp.png")
        fig.savefig(tmp, dpi=100)
        os.replace(tmp, path)
    return path
