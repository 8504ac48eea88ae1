"""Error rates and power of the live A/B trial's sequential test on simulated reaction counts.

Each simulated trial replays what the bot does: a channel's baseline frozen from its last 500 settled incumbent
posts, then posts assigned to the candidate with probability KILROY_AB_SHARE by the same seeded coin, scored like
real reaction counts and normalised like the bot's rewards, fed to the test in post order until it decides or
reaches the post budget.

Reaction counts: each post has an appeal u ~ Gamma(shape 0.8, mean m) (some posts land, most do not); it gets
Poisson(u) human reactions, Poisson(0.1·u) replying members (weight 2) and Poisson(0.03·m) 👎 (weight -1). So
scores are skewed, tied, often zero and sometimes negative. The expected score is 1.17·m; a candidate "20% better"
has every rate multiplied by 1.2 (its expected score is 20% higher), "20% worse" by 0.8.

The guard (KILROY_AB_MODE=guard, the default) serves the candidate at once and rolls it back on the test's `keep`
verdict, so its error rates are the `keep` column: `guard_false_alarm_rate` (A/A trials rolled back),
`guard_caught_20` (-20% adapters rolled back within the budget) and the posts that took (median and 90th
percentile, both arms together).

Scenarios (m): `sparse` 0.3 (about 3 posts in 4 get nothing), `typical` 1.5 (the `realistic` audience: ~40 members
reacting 3-5% of the time), `busy` 5. The JSON figures are for `--scenario` (default typical).

    python benchmarks/ab.py                 # 2,000 trials per condition, all scenarios printed
    python benchmarks/ab.py --quick         # 1,000 A/A trials, 400 per other condition, typical only (CI)
    python benchmarks/ab.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.trials.sequential import CANDIDATE, TrialConfig, TrialState, assign_arm, baselines, trial_reward

SCENARIOS = {"sparse": 0.3, "typical": 1.5, "busy": 5.0}
SHAPE = 0.8  # Gamma shape of a post's appeal: below 1, most posts get little and a few take off
HISTORY = 500  # KILROY_BASELINE_WINDOW


def draw_score(rng: random.Random, m: float, lift: float) -> float:
    """One post's score: reactions + 2 × replying members - 👎, the bot's default formula."""
    u = rng.gammavariate(SHAPE, m * lift / SHAPE)
    return _poisson(rng, u) + 2.0 * _poisson(rng, 0.1 * u) - _poisson(rng, 0.03 * m * lift)


def _poisson(rng: random.Random, lam: float) -> int:
    # Knuth for small means, a rounded normal for large ones (only the `busy` tail reaches it)
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def one_trial(seed: int, m: float, lift: float, config: TrialConfig, *, naive: bool = False) -> tuple[str, int, bool]:
    """Simulate one trial; return its verdict, how many settled posts it took, and (with `naive`) whether a
    one-sided t-test at the same alpha, checked every PEEK_EVERY posts up to the budget, would have promoted."""
    rng = random.Random(seed)
    history = {1: [draw_score(rng, m, 1.0) for _ in range(HISTORY)]}
    base = baselines(history)[1]
    state = TrialState(config)
    sums = {CANDIDATE: [0, 0.0, 0.0], "incumbent": [0, 0.0, 0.0]}  # n, sum, sum of squares per arm
    naive_promoted = False
    z_crit = statistics.NormalDist().inv_cdf(1 - config.alpha)
    index = 0
    while state.verdict is None or (naive and index < config.max_posts):
        arm = assign_arm(seed, index, config.share)
        index += 1
        score = draw_score(rng, m, lift if arm == CANDIDATE else 1.0)
        reward = trial_reward(score, base, config.clip)
        state.observe(arm, reward)
        if naive and not naive_promoted:
            s = sums[arm]
            s[0], s[1], s[2] = s[0] + 1, s[1] + reward, s[2] + reward * reward
            if index % PEEK_EVERY == 0:
                naive_promoted = _welch_z(sums[CANDIDATE], sums["incumbent"]) > z_crit
    return str(state.verdict), state.n, naive_promoted


PEEK_EVERY = 50  # the naive comparison: a fixed-sample test looked at after every 50 posts


def _welch_z(a: list, b: list) -> float:
    if a[0] < 2 or b[0] < 2:
        return 0.0
    ma, mb = a[1] / a[0], b[1] / b[0]
    va = max(a[2] / a[0] - ma * ma, 1e-12) * a[0] / (a[0] - 1)
    vb = max(b[2] / b[0] - mb * mb, 1e-12) * b[0] / (b[0] - 1)
    return (ma - mb) / math.sqrt(va / a[0] + vb / b[0])


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson interval of a proportion."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def condition(m: float, lift: float, trials: int, config: TrialConfig, seed0: int, *, naive: bool = False) -> dict:
    """Run `trials` trials of one condition; the share of each verdict and the posts to a decision."""
    verdicts: dict[str, int] = {"promote": 0, "keep": 0, "futile": 0}
    posts, kept_posts = [], []
    naive_promoted = 0
    for i in range(trials):
        verdict, n, naive_hit = one_trial(seed0 + i, m, lift, config, naive=naive)
        verdicts[verdict] += 1
        posts.append(n)
        if verdict == "keep":
            kept_posts.append(n)
        naive_promoted += naive_hit
    promoted = verdicts["promote"]
    return {
        "trials": trials,
        "promoted": promoted / trials,
        "promoted_ci": wilson(promoted, trials),
        "kept_worse": verdicts["keep"] / trials,
        "kept_worse_ci": wilson(verdicts["keep"], trials),
        # the guard (KILROY_AB_MODE=guard) rolls back on a `keep`: posts to a rollback, and their 90th percentile
        "median_posts_kept": statistics.median(kept_posts) if kept_posts else None,
        "p90_posts_kept": sorted(kept_posts)[int(0.9 * (len(kept_posts) - 1))] if kept_posts else None,
        "futile": verdicts["futile"] / trials,
        "median_posts": statistics.median(posts),
        "median_posts_decided": statistics.median([p for p in posts if p < config.max_posts] or [config.max_posts]),
        "naive_promoted": naive_promoted / trials if naive else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer trials, typical scenario only (for CI)")
    parser.add_argument("--trials", type=int, default=None, help="trials per condition (default 2000; quick 400)")
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="typical", help="the one the JSON reports")
    parser.add_argument("--share", type=float, default=0.5)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--max-posts", type=int, default=TrialConfig().max_posts)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="write the figures of --scenario here")
    args = parser.parse_args(argv)
    config = TrialConfig(share=args.share, alpha=args.alpha, max_posts=args.max_posts)
    n_other = args.trials or (400 if args.quick else 2000)
    n_aa = max(1000, n_other)  # the A/A rate is the one with a target: always at least 1,000 trials
    scenarios = [args.scenario] if args.quick else [args.scenario, *(s for s in SCENARIOS if s != args.scenario)]
    print(f"share {config.share} · alpha {config.alpha} · max posts {config.max_posts} · seed {args.seed}")
    print(
        f"{'scenario':<9} {'condition':<10} {'trials':>6} {'promoted':>9} {'95% CI':>15} {'kept':>6} "
        f"{'futile':>6} {'median posts':>12}"
    )
    figures: dict[str, dict] = {}
    for name in scenarios:
        m = SCENARIOS[name]
        started = time.perf_counter()
        rows = {
            "A/A": condition(m, 1.0, n_aa, config, args.seed * 10_000_000 + 1_000_000, naive=True),
            "+20%": condition(m, 1.2, n_other, config, args.seed * 10_000_000 + 2_000_000),
            "-20%": condition(m, 0.8, n_other, config, args.seed * 10_000_000 + 3_000_000),
        }
        for label, r in rows.items():
            lo, hi = r["promoted_ci"]
            print(
                f"{name:<9} {label:<10} {r['trials']:>6} {r['promoted']:>9.3f} {f'[{lo:.3f}, {hi:.3f}]':>15} "
                f"{r['kept_worse']:>6.3f} {r['futile']:>6.3f} {r['median_posts']:>12.0f}"
            )
        print(
            f"{'':<9} a t-test peeked every {PEEK_EVERY} posts would promote {rows['A/A']['naive_promoted']:.3f} of "
            f"the A/A trials ({time.perf_counter() - started:.1f} s)"
        )
        figures[name] = rows
    head = figures[args.scenario]
    result = {
        "false_promotion_rate": head["A/A"]["promoted"],
        "false_promotion_ci": list(head["A/A"]["promoted_ci"]),
        "naive_peeking_false_promotion_rate": head["A/A"]["naive_promoted"],
        "power_20": head["+20%"]["promoted"],
        "median_posts_to_decision": head["+20%"]["median_posts"],
        "worse_promoted_rate": head["-20%"]["promoted"],
        # the guard: a serving adapter rolled back although no worse (A/A), and a -20% adapter rolled back
        "guard_false_alarm_rate": head["A/A"]["kept_worse"],
        "guard_false_alarm_ci": list(head["A/A"]["kept_worse_ci"]),
        "guard_caught_20": head["-20%"]["kept_worse"],
        "guard_caught_20_ci": list(head["-20%"]["kept_worse_ci"]),
        "guard_median_posts_to_catch_20": head["-20%"]["median_posts_kept"],
        "guard_p90_posts_to_catch_20": head["-20%"]["p90_posts_kept"],
        "trials": head["A/A"]["trials"] + head["+20%"]["trials"] + head["-20%"]["trials"],
        "scenario": args.scenario,
        "max_posts": config.max_posts,
        "share": config.share,
        "alpha": config.alpha,
    }
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
