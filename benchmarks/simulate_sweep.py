"""Lift per audience and seed for the shipped trainer (and variants), in one run.

    python benchmarks/simulate_sweep.py                       # 3 built-in audiences x 3 seeds, defaults
    python benchmarks/simulate_sweep.py --objective awr       # the other objective, same seeds
    python benchmarks/simulate_sweep.py --audiences dragon_fans --set KILROY_KL_BETA=0

Prints one row per run and the mean; distinct-2 ratio is the last night's distinct-2 over night 0's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bot.config import load_settings
from bot.logs import setup_logging
from bot.simulation import builtin_audiences, simulate


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--audiences", default="cat_people,stargazers,foodies")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--nights", type=int, default=8)
    p.add_argument("--posts-per-night", type=int, default=64)
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
    print(f"{'audience':<14}{'seed':>5}{'baseline':>10}{'final':>8}{'lift':>7}{'d2 ratio':>10}{'secs':>7}")
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
                    )
                )
            secs = time.perf_counter() - started
            d2 = r.nights[-1].distinct2 / r.nights[0].distinct2
            rows.append(
                {
                    "audience": name,
                    "seed": seed,
                    "lift": r.lift,
                    "d2_ratio": d2,
                    "seconds": secs,
                    "baseline": r.baseline_mean_score,
                    "final": r.final_mean_score,
                }
            )
            print(
                f"{name:<14}{seed:>5}{r.baseline_mean_score:>10.2f}{r.final_mean_score:>8.2f}{r.lift:>7.2f}"
                f"{d2:>10.2f}{secs:>7.0f}",
                flush=True,
            )
    print(
        f"mean lift {statistics.mean(r['lift'] for r in rows):.2f}  min lift {min(r['lift'] for r in rows):.2f}  "
        f"min d2 ratio {min(r['d2_ratio'] for r in rows):.2f}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
