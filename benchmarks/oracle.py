"""The oracle yardstick of issue 21: best-of-N on the audience's *true* expected score, at the KL a run spent.

For each `kilroy simulate --json` file given, the run's final night spent a total KL per post (adapter plus
reranking: `kl` per token times `mean_tokens`). Best-of-N has KL at most log N - (N-1)/N nats per post, so the
oracle at that KL is best-of-N with N solved from it (the log-lift interpolated between whole N). The oracle draws
fresh base samples, picks in each group of N the one the audience's members like best (their tastes, before
fatigue), and scores the picks in steady state with fatigue, exactly as `simulate` scores a night. The run's
log-lift over the oracle's is the fraction of the limit it reached.

    python benchmarks/oracle.py RUN.json [RUN.json ...] [--groups 128] [--max-n 32]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.config.settings import load_settings
from bot.engine.generator import Generator, SamplingParams
from bot.engine.model import load_base
from bot.sim.nights import AudienceSpec, builtin_audiences, mean_ci, rerank_kl


def oracle_curve(community, formula, texts: list[str], groups: int, max_n: int) -> dict[int, float]:
    """Log-lift of oracle best-of-N over plain samples, for N = 1..max_n, on `groups` groups of `max_n` samples."""
    tastes = [statistics.fmean(community.tastes(t)) for t in texts]
    plain = statistics.fmean(community.expected_scores(texts[:groups], formula))
    curve = {}
    for n in range(1, max_n + 1):
        picks = []
        for g in range(groups):
            block = range(g * max_n, g * max_n + n)
            picks.append(texts[max(block, key=lambda i: tastes[i])])
        curve[n] = math.log(statistics.fmean(community.expected_scores(picks, formula)) / plain)
    return curve


def at_kl(curve: dict[int, float], kl_per_post: float) -> tuple[float, float]:
    """(N, oracle log-lift) at this KL per post, interpolated between whole N; capped at the largest N."""
    ns = sorted(curve)
    for lo, hi in itertools.pairwise(ns):
        if rerank_kl(hi) >= kl_per_post:
            span = rerank_kl(hi) - rerank_kl(lo)
            w = (kl_per_post - rerank_kl(lo)) / span if span > 0 else 1.0
            return lo + w, curve[lo] + w * (curve[hi] - curve[lo])
    return float(ns[-1]), curve[ns[-1]]


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--audience-file", type=Path, default=None, help="when the runs used --audience-file")
    p.add_argument("--groups", type=int, default=128)
    p.add_argument("--max-n", type=int, default=32)
    p.add_argument("--seed", type=int, default=12345)
    args = p.parse_args()
    runs = []
    for path in args.runs:
        data = json.loads(path.read_text())
        runs += data.get("runs", [data])
    name = runs[0]["audience"]
    spec = AudienceSpec.from_file(args.audience_file) if args.audience_file else builtin_audiences()[name]
    settings = load_settings(None, {"KILROY_MODEL": "tiny"})
    params = SamplingParams.from_settings(settings.generation)
    gen = Generator(load_base(settings.model, settings.data_dir, device="cpu"), params)
    try:
        samples = await gen.generate(args.groups * args.max_n, seed=args.seed)
    finally:
        await gen.close()
    texts = [s.text for s in samples]
    fractions, rows = [], []
    for run in runs:
        community = spec.community(random.Random(f"{spec.name}/{run['seed']}"))  # the run's members
        curve = oracle_curve(community, settings.scoring, texts, args.groups, args.max_n)
        last = run["nights"][-1]
        kl_post = last["kl"] * last["mean_tokens"]
        n, oracle = at_kl(curve, kl_post)
        frac = math.log(run["lift"]) / oracle if oracle > 0 else float("nan")
        fractions.append(frac)
        rows.append(
            {
                "seed": run["seed"],
                "lift": run["lift"],
                "kl_per_post": kl_post,
                "oracle_n": n,
                "oracle_lift": math.exp(oracle),
                "fraction": frac,
            }
        )
        print(
            f"seed {run['seed']}: lift {run['lift']:.3f} at {kl_post:.2f} nats/post; oracle best-of-{n:.1f} "
            f"{math.exp(oracle):.3f}; fraction of the oracle's log-lift {frac:.2f}"
        )
    mean, lo, hi = mean_ci(fractions)
    print(f"{name}: fraction of the oracle's log-lift {mean:.2f} [{lo:.2f}, {hi:.2f}] over {len(fractions)} run(s)")
    print(json.dumps({"audience": name, "fraction": mean, "fraction_ci": [lo, hi], "runs": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
