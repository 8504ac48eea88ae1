"""`kilroy simulate`: the offline demo, nights of posting to a simulated audience with training."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.cli.common import CommandFactory, ProgressBar, write_atomic
from bot.config.settings import Settings

if TYPE_CHECKING:
    from bot.sim.nights import AudienceSpec

log = logging.getLogger("kilroy")


def _simulate_ab(settings: Settings, args: argparse.Namespace, audience: AudienceSpec) -> int:
    """`kilroy simulate --ab`: run, print the nights and the note, write --json and --plot."""
    from bot.sim.ab import simulate_ab

    workdir = Path(args.workdir) if args.workdir else settings.data_dir / "simulate-ab"
    started = time.perf_counter()

    def on_event(e: dict[str, Any]) -> None:
        if e.get("event") == "night" and e.get("stage") == "posting":
            print(f"night {e['night']}: posting (serving {e['adapter']})", file=sys.stderr)

    out = asyncio.run(
        simulate_ab(
            settings,
            audience,
            nights=args.nights,
            posts_per_night=args.posts_per_night,
            seed=args.seed,
            workdir=workdir,
            on_event=on_event,
            eval_samples=args.eval_samples,
        )
    )
    out["seconds"] = time.perf_counter() - started
    print("\nnight  mean score  expected  adapter   trial")
    for n in out["nights"]:
        t = n["trial"]
        trial = f"#{t['id']} c{t['arms']['candidate']}/i{t['arms']['incumbent']} -> {t['decision'] or '…'}" if t else ""
        if n.get("trial_started"):
            trial += f" (starts #{n['trial_started']['id']}: {n['trial_started']['candidate']})"
        print(f"{n['night']:>5}  {n['mean_score']:>10.2f}  {n['expected_score']:>8.2f}  {n['adapter']:<8}  {trial}")
    print(out["note"])
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    if args.plot:
        from bot.sim.plots import plot_ab_nights

        plot_ab_nights(out, Path(args.plot))
    return 0


def _simulate_communities(settings: Settings, args: argparse.Namespace) -> int:
    """`kilroy simulate --communities A,B`: one simulated server per audience on one bot; each server's lift."""
    from bot.sim.communities import audiences_from, simulate_communities, summarise
    from bot.sim.nights import AudienceError

    try:
        audiences = audiences_from(args.communities)
    except AudienceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.nights < 1 or args.posts_per_night < 2 or args.seeds < 1 or args.eval_samples < 2:
        print(
            "error: --nights and --seeds must be at least 1, --posts-per-night and --eval-samples at least 2",
            file=sys.stderr,
        )
        return 2
    workdir = Path(args.workdir) if args.workdir else settings.data_dir / "simulate-communities"
    started = time.perf_counter()

    def on_event(e: dict[str, Any]) -> None:
        if e.get("event") == "night" and e.get("stage") == "posting":
            print(f"night {e['night']}: {e['community']} served by {e['adapter']}", file=sys.stderr)
        elif e.get("event") == "trained":
            print(f"night {e['night']}: trained {e['community']}: {e['what']}", file=sys.stderr)

    seeds = list(range(args.seed, args.seed + args.seeds))
    results = []
    for seed in seeds:
        print(
            f"simulating {len(audiences)} servers ({', '.join(a.name for a in audiences)}), {args.nights} nights x "
            f"{args.posts_per_night} posts each, learning: {args.community_mode} (seed {seed})",
            file=sys.stderr,
        )
        results.append(
            asyncio.run(
                simulate_communities(
                    settings,
                    audiences,
                    mode=args.community_mode,
                    nights=args.nights,
                    posts_per_night=args.posts_per_night,
                    seed=seed,
                    workdir=workdir if len(seeds) == 1 else workdir / f"seed-{seed}",
                    eval_samples=args.eval_samples,
                    on_event=on_event,
                )
            )
        )
    out = summarise(results)
    out["seconds"] = time.perf_counter() - started
    several = len(seeds) > 1
    print(f"\nlearning: {args.community_mode}; lift (final / night-0 expected score) per server")
    for c in out["communities"]:
        lo, hi = c["lift_ci"]
        band = f"95% CI [{lo:.2f}, {hi:.2f}] over {len(seeds)} seeds" if several else "one seed, no interval"
        served = results[-1].servers[[s.community for s in results[-1].servers].index(c["community"])].nights[-1]
        print(f"  {c['community']:<6} {c['audience']:<20} {c['lift']:.2f}x, {band}; last served by {served.adapter}")
    print(f"{out['seconds']:.0f}s")
    if args.json:
        write_atomic(Path(args.json), json.dumps(out, indent=2, ensure_ascii=False))
    return 0


def cmd_simulate(settings: Settings, args: argparse.Namespace) -> int:
    """Run the offline nights loop against a simulated audience, once per seed."""
    from bot.sim.nights import AudienceError, AudienceSpec, builtin_audiences, mean_ci, simulate, summarise

    if args.communities:  # several servers on one bot (bot/sim/communities.py)
        return _simulate_communities(settings, args)
    try:
        if args.audience_file:
            audience = AudienceSpec.from_file(Path(args.audience_file))
        else:
            audiences = builtin_audiences()
            if args.audience not in audiences:
                print(f"error: unknown audience {args.audience!r}; built in: {', '.join(audiences)}", file=sys.stderr)
                return 2
            audience = audiences[args.audience]
    except AudienceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.nights < 1 or args.posts_per_night < 2 or args.seeds < 1 or args.eval_samples < 2:
        print(
            "error: --nights and --seeds must be at least 1, --posts-per-night and --eval-samples at least 2",
            file=sys.stderr,
        )
        return 2
    if args.ab:  # live A/B trials in the simulated community (bot/sim/ab.py)
        return _simulate_ab(settings, args, audience)
    workdir = Path(args.workdir) if args.workdir else settings.data_dir / "simulate"
    bar: ProgressBar | None = None
    started = time.perf_counter()

    def on_event(e: dict[str, Any]) -> None:
        nonlocal bar
        kind = e.get("event")
        if kind == "night" and e.get("stage") == "posting":
            print(f"night {e['night']}: posting with adapter {e['adapter']}", file=sys.stderr)
        elif kind == "progress" and e.get("stage") == "train":
            if bar is None:
                bar = ProgressBar(f"night {e['night']}: training")
            bar.update(e["step"], e["of"], f"loss {e['loss']:+.3f}")
        elif kind == "night_done":
            if bar is not None:
                bar.close()
                bar = None
            gate = "" if e["promoted"] is None else (" -> promoted" if e["promoted"] else f" -> kept out: {e['gate']}")
            print(
                f"night {e['night']}: mean score {e['mean_score']:.2f}, expected {e['expected_score']:.3f}, "
                f"KL {e['kl']:.3f}{gate}",
                file=sys.stderr,
            )

    seeds = list(range(args.seed, args.seed + args.seeds))
    results = []
    for seed in seeds:
        print(
            f"simulating {args.nights} nights x {args.posts_per_night} posts for audience {audience.name!r} "
            f"(seed {seed}, model {settings.model.name})",
            file=sys.stderr,
        )
        results.append(
            asyncio.run(
                simulate(
                    settings,
                    audience,
                    nights=args.nights,
                    posts_per_night=args.posts_per_night,
                    seed=seed,
                    workdir=workdir if len(seeds) == 1 else workdir / f"seed-{seed}",
                    on_event=on_event,
                    isolated=args.isolated,
                    eval_samples=args.eval_samples,
                )
            )
        )
    out = results[0].as_json() if len(results) == 1 else {}
    out.update(summarise(results))
    out["seconds"] = time.perf_counter() - started
    several = len(seeds) > 1
    what = "mean over seeds [95% CI]" if several else "one seed (--seeds 5 gives a 95% interval over seeds)"
    print(f"\naudience {audience.name}, seeds {seeds[0]}..{seeds[-1]}: {what}")
    print("night  expected score          sampled  KL     distinct-2  repeat3  tokens  promoted")
    for i in range(args.nights):
        nights = [r.nights[i] for r in results]
        m, lo, hi = mean_ci([n.expected_score for n in nights])
        promoted = sum(bool(n.promoted) for n in nights)

        def avg(key: str, nights: list[Any] = nights) -> float:
            return sum(getattr(n, key) for n in nights) / len(nights)

        band = f"[{lo:6.3f}, {hi:6.3f}]" if several else " " * 16
        print(
            f"{i:>5}  {m:6.3f} {band}  {avg('mean_score'):7.2f}  {avg('kl'):.3f}  "
            f"{avg('distinct2'):10.2f}  {avg('repeat3'):7.2f}  {avg('mean_tokens'):6.1f}  "
            f"{'-' if i == args.nights - 1 else f'{promoted}/{len(nights)}'}"
        )
    lo, hi = out["lift_ci"]
    # one seed has no spread to show: a zero-width interval would claim a certainty the run does not have
    spread = f"95% CI [{lo:.2f}, {hi:.2f}] over {len(seeds)} seeds" if several else "one seed, no interval"
    print(
        f"\nlift (final / night-0 expected score): {out['lift']:.2f}x, {spread}; "
        f"sampled-score lift {out['lift_sampled']:.2f}x; {out['seconds']:.0f}s"
    )
    print("samples from the last night:")
    for text in results[-1].nights[-1].samples[:5]:
        print(f"  • {text}")
    if args.json:
        write_atomic(Path(args.json), json.dumps(out, indent=2, ensure_ascii=False))
    if args.plot:
        from bot.sim.plots import plot_learning_curve

        plot_learning_curve(results, Path(args.plot))
    return 0


def add_parser(command: CommandFactory) -> None:
    """Declare the subcommand and its options."""
    s = command(
        "simulate",
        "offline demo: nights of posting to a simulated audience, with training",
        "The offline demo: each night the bot posts to a simulated audience, scores the posts and trains a new\n"
        "adapter. Needs no Discord and no network (the tiny model is built on first use).",
    )
    s.add_argument("--nights", type=int, default=8, help="nights to simulate (at least 1)")
    s.add_argument("--posts-per-night", type=int, default=64, help="posts per night (at least 2)")
    s.add_argument("--seed", type=int, default=0, help="the first seed (of the audience and the sampling)")
    s.add_argument("--seeds", type=int, default=1, help="run this many seeds (seed, seed+1, ...) and report a 95%% CI")
    s.add_argument("--eval-samples", type=int, default=256, help="fresh samples a night scored by expected engagement")
    s.add_argument(
        "--audience",
        default="realistic",
        help="a built-in audience: realistic, cat_people, dragon_fans, foodies, indifferent, stargazers",
    )
    s.add_argument(
        "--audience-file",
        default=None,
        help='a JSON audience spec: {"members": int, "reaction_rate": float, "likes": {"word": weight}, '
        '"dislikes": {"word": weight}}, optionally taste_spread, fatigue, fatigue_window; '
        "examples in bot/sim/audiences/",
    )
    s.add_argument("--json", default=None, help="write machine-readable results to this file")
    s.add_argument("--plot", default=None, help="write a PNG learning curve to this file")
    s.add_argument(
        "--workdir", default=None, help="where the simulation's database and adapters go (default: <data dir>/simulate)"
    )
    s.add_argument("--isolated", action="store_true", help="train each night in the worker process, as the bot does")
    s.add_argument(
        "--ab", action="store_true", help="live A/B trials: candidates go on trial, posts split between arms"
    )
    s.add_argument(
        "--communities",
        default=None,
        help="several servers on one bot, one per audience: comma-separated built-in names or JSON spec files "
        "(e.g. cat_people,realistic); reports each server's lift",
    )
    s.add_argument(
        "--community-mode",
        choices=("commons", "community", "shared"),
        default="commons",
        help="with --communities: commons (as the bot ships: the commons serves a server until "
        "KILROY_COMMUNITY_MIN_POSTS, then its own adapter), community (each its own from the base), "
        "shared (one adapter for all)",
    )
