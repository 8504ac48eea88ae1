"""Adapter switch times on a GPT-2-124M-shaped model, measured in one run.

    python benchmarks/adapters.py [--rank 16]

- switch between resident adapters (goal < 100 ms)
- load a rank-16 adapter from disk and switch (goal < 1 s)
Ratios are against one forward pass of the model at batch 1 x 32 tokens in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import torch
from peft import get_peft_model
from transformers import GPT2Config, GPT2LMHeadModel

from bot.adapters.store import AdapterStore
from bot.config.settings import ModelSettings
from bot.engine.generator import Generator, SamplingParams
from bot.engine.model import LoadedModel, lora_config


class _Tok:
    eos_token_id = bos_token_id = pad_token_id = 0


def make_adapters(store: AdapterStore, config: GPT2Config, rank: int, n: int) -> list[str]:
    names = []
    for i in range(n):
        torch.manual_seed(i)
        m = get_peft_model(GPT2LMHeadModel(config), lora_config(ModelSettings(lora_rank=rank, lora_alpha=2 * rank)))
        tmp = store.new_temp_dir()
        m.save_pretrained(str(tmp))
        names.append(store.commit(tmp, {"created_at": time.time()}))
    return names


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rank", type=int, default=16)
    args = p.parse_args()
    config = GPT2Config()
    store = AdapterStore(Path(tempfile.mkdtemp()) / "adapters")
    names = make_adapters(store, config, args.rank, 3)
    model = GPT2LMHeadModel(config).eval()
    ids = torch.randint(0, 50257, (1, 32))
    with torch.inference_mode():
        model(ids)
        t = time.perf_counter()
        for _ in range(5):
            model(ids)
        forward = (time.perf_counter() - t) / 5
    g = Generator(LoadedModel(model, _Tok(), "cpu", "none", "gpt2-124m-random"), SamplingParams(), keep_loaded=3)
    from_disk = []
    for name in names:
        from_disk.append(await g.use_adapter(name, store.path(name)))
    resident = []
    for _ in range(5):
        for name in names:
            resident.append(await g.use_adapter(name, None))
    await g.close()
    fd, rs = statistics.median(from_disk[1:]), statistics.median(resident)
    print(f"one forward pass (1x32 tokens): {forward * 1000:.1f} ms (baseline)")
    print(
        f"load rank-{args.rank} adapter from disk + switch: {fd * 1000:.1f} ms "
        f"({fd / forward:.2f}x forward; goal < 1000 ms)"
    )
    print(f"switch between resident adapters: {rs * 1000:.2f} ms  ({rs / forward:.3f}x forward; goal < 100 ms)")


if __name__ == "__main__":
    asyncio.run(main())
