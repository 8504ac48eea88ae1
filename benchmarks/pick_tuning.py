"""Choose best-of-N's novelty weight offline, on finished `kilroy simulate` runs (issue 21).

For each run's workspace (its adapters and nightly reward model as the last night left them), draw the last night's
evaluation samples again (N per post, the served adapter), pick them as the bot picks posts (each pick joins the
channel's recent posts), at several novelty weights, and score the picks as `simulate` scores a night: expected
score in steady state with fatigue, distinct-2 and mean tokens, against the base's plain samples (night 0).

    python benchmarks/pick_tuning.py WORKDIR:SEED [WORKDIR:SEED ...] [--audience realistic] [--n 8]
        [--novelty 0,0.25,0.5,1,2]

Choose on `realistic` only: benchmarks/audiences/ are held out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
from collections import deque
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.config.settings import load_settings
from bot.domain.safety import OutputFilter
from bot.engine.compose import RECENT_POSTS, pick
from bot.engine.generator import Generator, SamplingParams
from bot.engine.model import load_base
from bot.sim.nights import AudienceSpec, builtin_audiences
from bot.training.objective import distinct_n
from bot.training.reward_model import REWARD_MODEL_FILE, RewardModel


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="WORKDIR:SEED of finished simulate runs")
    p.add_argument("--audience", default="realistic")
    p.add_argument("--audience-file", type=Path, default=None)
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--posts", type=int, default=256)
    p.add_argument("--novelty", default="0,0.25,0.5,1,2")
    args = p.parse_args()
    spec = AudienceSpec.from_file(args.audience_file) if args.audience_file else builtin_audiences()[args.audience]
    weights = [float(x) for x in args.novelty.split(",")]
    settings = load_settings(None, {"KILROY_MODEL": "tiny"})
    formula, flt = settings.scoring, OutputFilter(settings.discord.blocklist, settings.safety.allow_urls)
    gen = Generator(
        load_base(settings.model, settings.data_dir, device="cpu"), SamplingParams.from_settings(settings.generation)
    )
    rows = []
    try:
        for spec_run in args.runs:
            workdir, seed = spec_run.rsplit(":", 1)
            adapters = Path(workdir) / "adapters"
            current = json.loads((adapters / "STATE.json").read_text())["current"]
            model = RewardModel.from_json(json.loads((adapters / REWARD_MODEL_FILE).read_text()))
            community = spec.community(random.Random(f"{spec.name}/{seed}"))
            eval_seed = int(seed) * 7919 + 104_729
            base = await gen.generate(args.posts, prompt=settings.generation.prompt, seed=eval_seed)
            base_texts = [s.text for s in base]
            base_score = statistics.fmean(community.expected_scores(base_texts, formula))
            base_d2 = distinct_n(base_texts)
            if current != "base":
                await gen.use_adapter(current, adapters / current)
            held = await gen.generate(args.posts * args.n, prompt=settings.generation.prompt, seed=eval_seed)
            plain = [s.text for s in held[:: args.n]]
            out = {"run": workdir, "seed": seed, "adapter": current, "base_score": base_score, "base_d2": base_d2}
            out["adapter_lift"] = statistics.fmean(community.expected_scores(plain, formula)) / base_score
            for w in weights:
                recent: deque[str] = deque(maxlen=RECENT_POSTS)
                picks = []
                for i in range(0, len(held), args.n):
                    c = pick(held[i : i + args.n], flt, scorer=model.scores, recent=tuple(recent), novelty=w)
                    if c is not None:
                        picks.append(c.sample)
                        recent.append(c.sample.text)
                texts = [s.text for s in picks]
                lift = statistics.fmean(community.expected_scores(texts, formula)) / base_score
                d2 = distinct_n(texts) / base_d2
                tokens = statistics.fmean(s.tokens for s in picks)
                out[f"novelty={w}"] = {"lift": lift, "d2_ratio": d2, "tokens": tokens}
                print(
                    f"{workdir} seed {seed} ({current}) novelty {w}: lift {lift:.3f}, distinct-2 {d2:.0%} of "
                    f"night 0, {tokens:.1f} tokens (adapter alone {out['adapter_lift']:.3f})",
                    flush=True,
                )
            rows.append(out)
    finally:
        await gen.close()
    for w in weights:
        lifts = [r[f"novelty={w}"]["lift"] for r in rows]
        d2s = [r[f"novelty={w}"]["d2_ratio"] for r in rows]
        print(f"novelty {w}: mean lift {statistics.fmean(lifts):.3f}, distinct-2 {min(d2s):.0%}-{max(d2s):.0%}")
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
