"""Communities benchmark (issue 24): per-community adapters against one shared adapter, on the same posts budget.

    python benchmarks/communities.py --setting divergent --seeds 5 --nights 8 --json out.json
    python benchmarks/communities.py --setting near --modes shared,commons --seeds 3 --json near.json
    python benchmarks/communities.py --setting divergent --modes community --seed 0 --seeds 1 --json one.json

Settings (audiences, one simulated server each, through `bot.sim.communities`):
- divergent: cat_people, football (benchmarks/audiences/football.json: likes what cat_people dislike, and back),
  realistic;
- near: cat_people and two near copies (benchmarks/audiences/cat_people_near_{a,b}.json: weights moved by ±0.1).

Ways of learning (`bot.sim.communities.MODES`): `community` (each server its own lineage from the base model),
`shared` (one adapter, the commons, trained on every server's pooled posts, serves all), `commons` (the shipped
policy: the commons until KILROY_COMMUNITY_MIN_POSTS settled posts and a passed gate, then the server's own lineage,
whose first adapter starts from the commons). Same posts a night per server, seeds and nights for every mode; with
posts a night a multiple of KILROY_BATCH_SIZE, a night's gradient steps are the same: one shared run over k×P posts
or k runs over P posts. Reports, per mode and server, the lift (last night's expected score of fresh samples of
what serves the server, over night 0's) with its 95% interval over seeds, and each seed's lift.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
SETTINGS = {
    "divergent": ["cat_people", str(ROOT / "audiences" / "football.json"), "realistic"],
    "near": [
        "cat_people",
        str(ROOT / "audiences" / "cat_people_near_a.json"),
        str(ROOT / "audiences" / "cat_people_near_b.json"),
    ],
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--setting", choices=sorted(SETTINGS), default="divergent")
    p.add_argument("--communities", default=None, help="comma-separated audiences instead of --setting's")
    p.add_argument("--modes", default="community,shared", help="comma-separated: community, shared, commons")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--nights", type=int, default=8)
    p.add_argument("--posts-per-night", type=int, default=64, help="per server")
    p.add_argument("--eval-samples", type=int, default=128)
    p.add_argument("--gate-samples", type=int, default=None, help="KILROY_GATE_SAMPLES (default: the shipped 256)")
    p.add_argument("--min-posts", type=int, default=None, help="KILROY_COMMUNITY_MIN_POSTS for the commons mode")
    p.add_argument("--model", default="tiny")
    p.add_argument("--data-dir", default="data", help="where the tiny model is cached")
    p.add_argument("--json", default=None, help="write every run and the summary here (rewritten after each run)")
    p.add_argument("--merge", nargs="+", default=None, help="report on these --json files together (runs nothing)")
    args = p.parse_args(argv)
    if args.merge:
        return report([json.loads(Path(f).read_text(encoding="utf-8")) for f in args.merge], args.json)

    from bot.config.settings import load_settings
    from bot.logs import setup_logging
    from bot.sim.communities import audiences_from, simulate_communities, summarise

    env = {"KILROY_MODEL": args.model, "KILROY_LOG_LEVEL": "error", "KILROY_DATA_DIR": args.data_dir}
    if args.gate_samples is not None:
        env["KILROY_GATE_SAMPLES"] = str(args.gate_samples)
    settings = load_settings(None, env)
    setup_logging(settings.log_level)
    audiences = audiences_from(args.communities or ",".join(SETTINGS[args.setting]))
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    seeds = list(range(args.seed, args.seed + args.seeds))
    runs: dict[str, list] = {m: [] for m in modes}
    out: dict = {
        "setting": args.setting if args.communities is None else "custom",
        "audiences": [a.name for a in audiences],
        "nights": args.nights,
        "posts_per_night": args.posts_per_night,
        "min_posts": args.min_posts,
        "eval_samples": args.eval_samples,
        "gate_samples": settings.training.gate_samples,
        "seconds": {},
    }
    with tempfile.TemporaryDirectory(prefix="kilroy-communities-") as tmp:
        for seed in seeds:
            for mode in modes:
                started = time.perf_counter()
                result = asyncio.run(
                    simulate_communities(
                        settings,
                        audiences,
                        mode=mode,
                        nights=args.nights,
                        posts_per_night=args.posts_per_night,
                        seed=seed,
                        workdir=Path(tmp) / f"{mode}-{seed}",
                        min_posts=args.min_posts,
                        eval_samples=args.eval_samples,
                    )
                )
                took = time.perf_counter() - started
                out["seconds"][f"{mode}/{seed}"] = round(took, 1)
                runs[mode].append(result)
                lifts = ", ".join(f"{s.audience} {s.lift:.3f}" for s in result.servers)
                print(f"seed {seed} {mode:<9} {lifts}  ({took:.0f}s)", file=sys.stderr, flush=True)
                out["modes"] = {m: summarise(r) for m, r in runs.items() if r}
                if args.json:
                    Path(args.json).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return report([out], None)


def report(outs: list[dict], path: str | None) -> int:
    """Print (and with `path`, write) the runs of one or more --json files as one table: per mode and server the
    mean lift, its 95% interval and each seed's lift; each night's mean lift (where the commons gives way); and the
    issue's checks (per-community above shared everywhere, intervals apart, >= 90% of shared)."""
    from bot.sim.nights import mean_ci

    runs: dict[str, dict[int, dict]] = {}
    for out in outs:
        for mode, summary in out.get("modes", {}).items():
            for run in summary["runs"]:
                runs.setdefault(mode, {})[run["seed"]] = run
    first = outs[0]
    modes = list(runs)
    names = first["audiences"]
    table: dict[str, list[tuple[float, float, float, list[float]]]] = {}
    for mode in modes:
        seeds = sorted(runs[mode])
        rows = []
        for i in range(len(names)):
            lifts = [runs[mode][s]["communities"][i]["lift"] for s in seeds]
            rows.append((*mean_ci(lifts), lifts))
        table[mode] = rows
        print(f"{mode}: seeds {seeds}")
    print(f"\n{first['setting']}: {first['nights']} nights, {first['posts_per_night']} posts a night per server")
    for i, name in enumerate(names):
        for mode in modes:
            mean, lo, hi, lifts = table[mode][i]
            each = " ".join(f"{x:.2f}" for x in lifts)
            print(f"  {name:<20} {mode:<9} lift {mean:.3f} [{lo:.3f}, {hi:.3f}]  seeds: {each}")
    print("\nmean expected-score lift by night (night n: the adapter trained on n nights of posts)")
    for i, name in enumerate(names):
        for mode in modes:
            nights = [runs[mode][s]["communities"][i]["nights"] for s in sorted(runs[mode])]
            by_night = [
                statistics.fmean(n[k]["expected_score"] / n[0]["expected_score"] for n in nights)
                for k in range(len(nights[0]))
            ]
            print(f"  {name:<20} {mode:<9} " + " ".join(f"{x:5.2f}" for x in by_night))
    checks = {}
    if "community" in table and "shared" in table:
        above = [table["community"][i][0] > table["shared"][i][0] for i in range(len(names))]
        apart = [table["community"][i][1] > table["shared"][i][2] for i in range(len(names))]
        checks["per_community_above_shared"] = above
        checks["intervals_apart"] = apart
        print(f"\nper-community above shared: {above}; 95% intervals apart (per-community higher): {apart}")
    if "commons" in table and "shared" in table:
        ratio = [
            (table["commons"][i][0] - 1) / (table["shared"][i][0] - 1) if table["shared"][i][0] > 1 else None
            for i in range(len(names))
        ]
        checks["commons_share_of_shared_lift"] = ratio
        print(f"per-community with the commons, share of the shared adapter's lift (lift - 1): {ratio}")
    if path:
        merged = {
            **first,
            "modes": {m: {"seeds": sorted(runs[m]), "runs": [runs[m][s] for s in sorted(runs[m])]} for m in modes},
            "checks": checks,
        }
        Path(path).write_text(json.dumps(merged, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
