"""Lift per audience and seed for the shipped trainer (and variants), in one run.

    python benchmarks/simulate_sweep.py                       # 3 built-in audiences x 3 seeds, defaults
    python benchmarks/simulate_sweep.py --objective awr       # the other objective, same seeds
    python benchmarks/simulate_sweep.py --audiences dragon_fans --set KILROY_KL_BETA=0

Prints one row per run: lift (final over night-0 expected score of fresh samples), the sampled-score lift, the
last night's distinct-2 and repeat3 over night 0's (on the same fresh samples), the final KL to the base, and
whether the run keeps repeat3 <= 1.5x and distinct-2 >= 80% of night 0. Then the mean lift and its 95% CI per
audience.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from bot.config.settings import load_settings
from bot.logs import setup_logging
from bot.sim.nights import builtin_audiences, mean_ci, simulate


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--audiences", default="realistic,cat_people,stargazers,foodies,dragon_fans")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--nights", type=int, default=8)
    p.add_argument("--posts-per-night", type=int, default=64)
    p.add_argument("--eval-samples", type=int, default=256)
    p.add_argument("--objective", default=None)
    p.add_argument("--model", default="tiny")
    p.add_argument("--set", action="append", default=[], help="KILROY_X=value overrides")
    p.add_argument("--json")
    args = p.parse_args()
    overrides = {"KILROY_MODEL": args.model, "KILROY_LOG_LEVEL": "warning"}
    if args.objective:
        overrides["KILROY_OBJECTIVE"] = args.objective
    overrides.update(dict(kv.split("=", 1) for kv in args.set))
    settings = load_settings(None, overrides)
    setup_logging("WARNING")
    audiences = builtin_audiences()
    rows = []
    print(f"objective={settings.training.objective} overrides={overrides}")
    print(
        f"{'audience':<14}{'seed':>5}{'lift':>7}{'sampled':>9}{'d2 ratio':>10}{'rep3 0':>8}{'rep3 N':>8}{'KL':>7}"
        f"{'ok':>5}{'secs':>7}"
    )
    for name in args.audiences.split(","):
        for seed in [int(s) for s in args.seeds.split(",")]:
            started = time.perf_counter()
            with tempfile.TemporaryDirectory() as tmp:
                r = asyncio.run(
                    simulate(
                        settings,
                        audiences[name],
                        nights=args.nights,
                        posts_per_night=args.posts_per_night,
                        seed=seed,
                        workdir=Path(tmp) / "w",
                        eval_samples=args.eval_samples,
                    )
                )
            secs = time.perf_counter() - started
            first, last = r.nights[0], r.nights[-1]
            d2 = last.distinct2 / first.distinct2 if first.distinct2 else 0.0
            rep = last.repeat3 / first.repeat3 if first.repeat3 else (1.0 if last.repeat3 == 0 else float("inf"))
            ok = rep <= 1.5 and d2 >= 0.8
            rows.append(
                {
                    "audience": name,
                    "seed": seed,
                    "lift": r.lift,
                    "lift_sampled": r.lift_sampled,
                    "d2_ratio": d2,
                    "repeat3_0": first.repeat3,
                    "repeat3": last.repeat3,
                    "kl": last.kl,
                    "healthy": ok,
                    "seconds": secs,
                }
            )
            print(
                f"{name:<14}{seed:>5}{r.lift:>7.2f}{r.lift_sampled:>9.2f}{d2:>10.2f}"
                f"{first.repeat3:>8.3f}{last.repeat3:>8.3f}{last.kl:>7.3f}{'yes' if ok else 'NO':>5}{secs:>7.0f}",
                flush=True,
            )
    for name in args.audiences.split(","):
        lifts = [r["lift"] for r in rows if r["audience"] == name]
        mean, lo, hi = mean_ci(lifts)
        print(f"{name:<14} mean lift {mean:.2f} [95% CI {lo:.2f}, {hi:.2f}] over {len(lifts)} seeds")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
