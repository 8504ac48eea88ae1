"""Generation speed and event-loop responsiveness, measured in one run.

    python benchmarks/generation.py [--tokens 48] [--skip-124m]

Prints tokens/s of the tiny offline model and of a randomly initialised GPT-2-124M-shaped model, at batch 1 and 8,
each as a ratio to the 124M batch-1 baseline measured in the same run; and the event loop's worst lag while the
Generator works (goal: under 50 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import tempfile
import time
from pathlib import Path

from bot.config.settings import ModelSettings
from bot.engine.generator import Generator, SamplingParams
from bot.engine.model import LoadedModel, load_base


def gpt2_124m(tmp: Path, tokenizer) -> LoadedModel:
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(vocab_size=50257, bos_token_id=0, eos_token_id=0)).eval()
    return LoadedModel(model, tokenizer, "cpu", "none", "gpt2-124m-random")


async def tokens_per_second(loaded: LoadedModel, batch: int, tokens: int, repeats: int = 2) -> float:
    g = Generator(loaded, SamplingParams(max_new_tokens=tokens, top_k=0, top_p=1.0))
    try:
        await g.generate(1, stop_at_newline=False, max_new_tokens=4)  # warm up
        rates = []
        for r in range(repeats):
            start = time.perf_counter()
            samples = await g.generate(batch, stop_at_newline=False, seed=r)
            rates.append(sum(s.tokens for s in samples) / (time.perf_counter() - start))
        return statistics.median(rates)
    finally:
        await g.close()


async def worst_lag(loaded: LoadedModel, tokens: int) -> tuple[float, float]:
    """(worst, median) lateness of a 10 ms ticker while generating, in ms."""
    g = Generator(loaded, SamplingParams(max_new_tokens=tokens))
    lags: list[float] = []
    stop = False

    async def ticker() -> None:
        while not stop:
            t = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append((time.perf_counter() - t - 0.01) * 1000)

    task = asyncio.create_task(ticker())
    for i in range(3):
        await g.generate(8, stop_at_newline=False, seed=i)
    stop = True
    await task
    await g.close()
    return max(lags), statistics.median(lags)


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--tokens", type=int, default=48)
    p.add_argument("--skip-124m", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    tmp = Path(tempfile.mkdtemp())
    tiny = load_base(ModelSettings(name="tiny"), Path("data"), device="cpu")
    rows = []
    if not args.skip_124m:
        big = gpt2_124m(tmp, tiny.tokenizer)
        base = await tokens_per_second(big, 1, args.tokens)
        rows.append(("gpt2-124m (random) batch 1", base))
        rows.append(("gpt2-124m (random) batch 8", await tokens_per_second(big, 8, args.tokens)))
    rows.append(("tiny batch 1", await tokens_per_second(tiny, 1, args.tokens)))
    rows.append(("tiny batch 8", await tokens_per_second(tiny, 8, args.tokens)))
    base = rows[0][1]
    print(f"{'model':<30}{'tok/s':>10}{'x baseline':>12}")
    for name, rate in rows:
        print(f"{name:<30}{rate:>10.1f}{rate / base:>12.2f}")
    target = big if not args.skip_124m else tiny
    worst, median = await worst_lag(target, args.tokens)
    print(
        f"event loop lag while generating ({target.name}): worst {worst:.1f} ms, median {median:.2f} ms "
        f"(goal < 50 ms; worst / 10 ms tick = {worst / 10:.2f})"
    )


if __name__ == "__main__":
    asyncio.run(main())
