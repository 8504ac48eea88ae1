"""PNG plots (matplotlib, headless) of the simulation: the learning curve and the A/B nights."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.sim.nights import SimulationResult


def _figure() -> object:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_learning_curve(results: SimulationResult | Sequence[SimulationResult], path: Path) -> Path:
    """Expected score per night (mean over seeds, with its 95% band when there are several), the sampled
    nightly means as faint dots, and distinct-2 on the right axis; written atomically."""
    from bot.sim.nights import mean_ci

    runs = [results] if not isinstance(results, Sequence) else list(results)
    plt = _figure()
    nights = [n.night for n in runs[0].nights]
    per_night = [[r.nights[i] for r in runs] for i in range(len(nights))]
    stats = [mean_ci([n.expected_score for n in ns]) for ns in per_night]
    fig, ax = plt.subplots(figsize=(7, 4))  # type: ignore[attr-defined]
    label = "expected score" + (f" (mean of {len(runs)} seeds, 95% band)" if len(runs) > 1 else "")
    ax.plot(nights, [m for m, _, _ in stats], marker="o", label=label)
    if len(runs) > 1:
        ax.fill_between(nights, [lo for _, lo, _ in stats], [hi for _, _, hi in stats], alpha=0.25)
    for r in runs:
        ax.scatter(nights, [n.mean_score for n in r.nights], s=8, color="grey", alpha=0.4)
    ax.scatter([], [], s=8, color="grey", alpha=0.4, label="sampled night mean")
    ax.set_xlabel("night")
    ax.set_ylabel("score per post")
    ax.set_ylim(bottom=0)
    ax2 = ax.twinx()
    d2 = [sum(n.distinct2 for n in ns) / len(ns) for ns in per_night]
    ax2.plot(nights, d2, color="tab:orange", linestyle="--", marker=".", label="distinct-2")
    ax2.set_ylabel("distinct-2")
    ax2.set_ylim(0, 1)
    lift, lo, hi = mean_ci([r.lift for r in runs])
    ci = f" [{lo:.2f}, {hi:.2f}]" if len(runs) > 1 else ""
    ax.set_title(f"Kilroy learning: audience {runs[0].audience}, lift {lift:.2f}x{ci}")
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="lower right", fontsize="small")
    fig.tight_layout()
    return _save(fig, plt, path)


def plot_ab_nights(result: dict, path: Path) -> Path:
    """`simulate --ab`: mean and expected score per night; a trial's nights shaded, promotions marked."""
    plt = _figure()
    nights = result["nights"]
    xs = [n["night"] for n in nights]
    fig, ax = plt.subplots(figsize=(7, 4))  # type: ignore[attr-defined]
    ax.plot(xs, [n["mean_score"] for n in nights], marker="o", label="mean score (sampled)")
    ax.plot(xs, [n["expected_score"] for n in nights], marker=".", linestyle="--", label="expected score")
    for n in nights:
        if n.get("trial"):
            ax.axvspan(n["night"] - 0.5, n["night"] + 0.5, color="tab:gray", alpha=0.12, linewidth=0)
    for n in nights:
        if n.get("promoted"):
            ax.axvline(n["night"] + 0.5, color="tab:green", linestyle=":")
            ax.annotate("promoted", (n["night"] + 0.5, ax.get_ylim()[1]), ha="center", va="top", color="tab:green")
        elif n.get("trial") and n["trial"].get("decision"):
            ax.axvline(n["night"] + 0.5, color="tab:red", linestyle=":")
    ax.set_xlabel("night (shaded: an A/B trial running)")
    ax.set_ylabel("score per post")
    ax.set_title(f"Kilroy with A/B trials: audience {result['audience']}")
    ax.legend(loc="upper left")
    fig.tight_layout()
    return _save(fig, plt, path)


def _save(fig: object, plt: object, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=100)  # type: ignore[attr-defined]
    plt.close(fig)  # type: ignore[attr-defined]
    os.replace(tmp, path)
    return path
