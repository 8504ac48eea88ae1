"""PNG plots (matplotlib, headless): the simulation's learning curve and per-day stats."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.simulation import SimulationResult


def _figure() -> object:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_learning_curve(result: SimulationResult, path: Path) -> Path:
    """Mean score and distinct-2 per night, written atomically."""
    plt = _figure()
    nights = [n.night for n in result.nights]
    fig, ax = plt.subplots(figsize=(7, 4))  # type: ignore[attr-defined]
    ax.plot(nights, [n.mean_score for n in result.nights], marker="o", label="mean score")
    ax.set_xlabel("night")
    ax.set_ylabel("mean score per post")
    ax2 = ax.twinx()
    ax2.plot(
        nights, [n.distinct2 for n in result.nights], color="tab:orange", linestyle="--", marker=".", label="distinct-2"
    )
    ax2.set_ylabel("distinct-2")
    ax2.set_ylim(0, 1)
    ax.set_title(f"Kilroy learning: audience {result.audience}, lift {result.lift:.2f}x")
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="center right")
    fig.tight_layout()
    return _save(fig, plt, path)


def plot_daily_scores(days: Sequence[str], means: Sequence[float], adapters: Sequence[str], path: Path) -> Path:
    """Mean score per day, one colour per adapter version."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(7, 4))  # type: ignore[attr-defined]
    names = list(dict.fromkeys(adapters))
    for name in names:
        xs = [i for i, a in enumerate(adapters) if a == name]
        ax.bar(xs, [means[i] for i in xs], label=name)
    ax.set_xticks(range(len(days)), days, rotation=45, ha="right")
    ax.set_ylabel("mean score per post")
    ax.legend(title="adapter")
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
