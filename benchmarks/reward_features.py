"""Reward-model features, compared without training (issue 21): words (the shipped ridge model) against word
1-2-grams, each with the linear length term, on the same base samples and sampled reactions.

For each audience: fresh base samples of the tiny model; `--fit` of them get sampled reactions (each member reacts
with their probability, fatigue in steady state, scored by the shipped formula) and both models are fit on them;
the other samples, in groups of `--n`, are picked by each model (`RewardModel.scores`, as best-of-N ranks) and by
the audience's true taste (the oracle), and scored in steady state as `simulate` scores a night. Reported: each
pick's lift over plain samples, its fraction of the oracle's log-lift, and the Spearman correlation of the
model's prediction with the true mean taste. Repeated over `--reps` draws of the reactions.

    python benchmarks/reward_features.py [--audiences realistic,...] [--fit 448] [--groups 128] [--n 8] [--reps 3]

Audience names are built-in or benchmarks/audiences/NAME.json. The features were chosen without looking at any
audience's form, so the held-out audiences may be reported here (nothing is tuned on them).
"""

from __future__ import annotations

import argparse
import asyncio
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
from bot.sim.nights import _CHANGED_MIND, _NEUTRAL, AudienceSpec, bigrams, builtin_audiences, mean_ci
from bot.training.reward_model import fit_reward_model

HERE = Path(__file__).resolve().parent


def audience(name: str) -> AudienceSpec:
    path = HERE / "audiences" / f"{name}.json"
    return AudienceSpec.from_file(path) if path.exists() else builtin_audiences()[name]


def sampled_scores(community, texts, formula, rng: random.Random) -> list[float]:
    """Each post's score from sampled reactions (as `react` draws them, in expectation per member), fatigue in
    steady state over the posts before it."""
    neutral = statistics.fmean(formula.weight(e) for e in _NEUTRAL)
    grams = [bigrams(t) for t in texts]
    window = community.spec.fatigue_window
    out = []
    for i, text in enumerate(texts):
        seen = grams[max(0, i - window) : i] if community.spec.fatigue > 0 else ()
        penalty = community.fatigue_penalty(text, seen)
        score = 0.0
        for taste in community.tastes(text):
            p = min(0.95, community.spec.reaction_rate * math.exp(taste - penalty))
            if rng.random() < p:
                if taste > 0:
                    vote = formula.weight("❤️")
                elif taste == 0 or rng.random() < 0.5:
                    vote = neutral
                else:
                    vote = formula.weight("👎")
                score += (1 - _CHANGED_MIND) * vote
                if rng.random() < community.spec.reply_rate:
                    score += formula.reply_weight
        out.append(score)
    return out


def spearman(a, b) -> float:
    def ranks(v):
        order = sorted(range(len(v)), key=lambda i: v[i])
        r = [0.0] * len(v)
        for k, i in enumerate(order):
            r[i] = float(k)
        return r

    ra, rb = ranks(a), ranks(b)
    ma, mb = statistics.fmean(ra), statistics.fmean(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb, strict=True))
    va = math.sqrt(sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb))
    return cov / va if va > 0 else 0.0


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--audiences", default="realistic,phrase_length,weather_code,weak_space_cats,strong_words")
    p.add_argument("--fit", type=int, default=448)
    p.add_argument("--groups", type=int, default=128)
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    settings = load_settings(None, {"KILROY_MODEL": "tiny"})
    formula = settings.scoring
    gen = Generator(
        load_base(settings.model, settings.data_dir, device="cpu"), SamplingParams.from_settings(settings.generation)
    )
    try:
        samples = await gen.generate(args.fit + args.groups * args.n, prompt=settings.generation.prompt, seed=args.seed)
    finally:
        await gen.close()
    texts = [s.text for s in samples]
    fit_texts, eval_texts = texts[: args.fit], texts[args.fit :]
    results = {}
    for name in args.audiences.split(","):
        spec = audience(name)
        rows = {"words": [], "ngrams": [], "oracle": []}
        for rep in range(args.reps):
            community = spec.community(random.Random(f"{spec.name}/{rep}"))
            truth = [statistics.fmean(community.tastes(t)) for t in eval_texts]
            plain = statistics.fmean(community.expected_scores(eval_texts[:: args.n], formula))

            def lift(key, community=community, plain=plain) -> float:
                picks = [eval_texts[max(range(g * args.n, (g + 1) * args.n), key=key)] for g in range(args.groups)]
                return statistics.fmean(community.expected_scores(picks, formula)) / plain

            oracle = lift(lambda i, truth=truth: truth[i])
            rows["oracle"].append({"lift": oracle})
            scores = sampled_scores(community, fit_texts, formula, random.Random(f"{name}/{rep}/reactions"))
            for kind in ("words", "ngrams"):
                model = fit_reward_model(fit_texts, scores, permutations=19, bigrams=kind == "ngrams")
                predicted = model.scores(eval_texts)
                got = lift(lambda i, predicted=predicted: (predicted[i], -i)) if model.signal > 0 else 1.0
                rows[kind].append(
                    {
                        "lift": got,
                        "fraction": math.log(got) / math.log(oracle) if oracle > 1 else float("nan"),
                        "spearman": spearman(predicted, truth),
                        "signal": model.signal,
                        "p_value": model.p_value,
                    }
                )
        summary = {"oracle_lift": statistics.fmean(r["lift"] for r in rows["oracle"])}
        for kind in ("words", "ngrams"):
            lifts = [r["lift"] for r in rows[kind]]
            fr = mean_ci([r["fraction"] for r in rows[kind]])
            summary[kind] = {
                "lift": statistics.fmean(lifts),
                "fraction": fr[0],
                "fraction_ci": [fr[1], fr[2]],
                "spearman": statistics.fmean(r["spearman"] for r in rows[kind]),
                "signal": statistics.fmean(r["signal"] for r in rows[kind]),
            }
        results[name] = {"summary": summary, "reps": rows}
        print(
            f"{name}: oracle best-of-{args.n} {summary['oracle_lift']:.3f}; "
            + "; ".join(
                f"{k} {summary[k]['lift']:.3f} ({summary[k]['fraction']:.2f} of the oracle's log-lift "
                f"[{summary[k]['fraction_ci'][0]:.2f}, {summary[k]['fraction_ci'][1]:.2f}], Spearman "
                f"{summary[k]['spearman']:.3f}, LOO R² {summary[k]['signal']:.3f})"
                for k in ("words", "ngrams")
            ),
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
