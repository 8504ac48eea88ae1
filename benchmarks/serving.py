"""Serving many adapters from one base model (issue 24, part 3), on GPT-2's 124M shape, measured in one run.

    python benchmarks/serving.py [--rank 8] [--tokens 32] [--repeats 5] [--threads 1] [--json serving.json]

- tokens/s of one mixed batch of 8 rows by 8 different adapters (peft's `adapter_names`) against one batch of the
  same 8 rows by a single adapter (the ordinary active-adapter path), interleaved repeat by repeat; the cost ratio
  is single tok/s / mixed tok/s per repeat (done when <= 1.3x). A base-model batch of 8 is printed beside them.
- a resident-cache hit against a cold load from disk (shape check, safetensors read, peft load, key check) of a
  rank-r adapter, median over repeats (done when the cold load < 200 ms). The files sit in the OS page cache (they
  were just written), as a recently trained or recently evicted adapter would.
- memory per resident adapter: its LoRA tensors' bytes, and the process's RSS growth per adapter over 8 loads.

The model is a randomly initialised GPT2LMHeadModel(GPT2Config()) (no hub); adapters are random LoRAs of the shape
the bot trains (bot/engine/model.py lora_config). Decoding: top-k 0, top-p 1, no stop at newlines, no no-repeat
guard, so every row of every batch generates exactly --tokens tokens and both batches do the same work.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from peft import get_peft_model
from transformers import GPT2Config, GPT2LMHeadModel

from bot.adapters.store import AdapterStore
from bot.config.settings import ModelSettings
from bot.engine.generator import Generator, Request, SamplingParams, peft_name
from bot.engine.model import LoadedModel, lora_config

ADAPTERS = 8


class _Tok:
    """Enough of a tokenizer for id-in, id-out sampling (prompts are given as ids; texts are not needed)."""

    eos_token_id = bos_token_id = pad_token_id = 0

    def decode(self, ids, skip_special_tokens=True):
        return ""


def make_adapters(store: AdapterStore, config: GPT2Config, rank: int, n: int) -> list[Path]:
    """`n` random adapters of the bot's LoRA shape, saved in peft's format (one model, re-drawn per adapter)."""
    torch.manual_seed(0)
    m = get_peft_model(GPT2LMHeadModel(config), lora_config(ModelSettings(lora_rank=rank, lora_alpha=2 * rank)))
    paths = []
    for _ in range(n):
        with torch.no_grad():
            for name, p in m.named_parameters():
                if "lora_A" in name:
                    p.normal_(0, 0.02)
                elif "lora_B" in name:
                    p.normal_(0, 0.02)  # non-zero: each adapter really changes the model
        tmp = store.new_temp_dir()
        m.save_pretrained(str(tmp))
        paths.append(store.path(store.commit(tmp, {"created_at": time.time()})))
    return paths


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def spread(xs: list[float]) -> dict[str, float]:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}


async def throughput(g: Generator, refs: list[str], tokens: int, repeats: int, prompt_len: int) -> dict:
    """Interleaved repeats of (single-adapter batch, mixed batch, base batch), each of len(refs) rows."""
    gen = torch.Generator().manual_seed(0)
    prompts = [tuple(torch.randint(1, 50257, (prompt_len,), generator=gen).tolist()) for _ in refs]
    single = [Request(refs[0], n=1, prompt_ids=p) for p in prompts]
    mixed = [Request(r, n=1, prompt_ids=p) for r, p in zip(refs, prompts, strict=True)]
    base = [Request("base", n=1, prompt_ids=p) for p in prompts]
    kw = {"stop_at_newline": False, "max_new_tokens": tokens}
    for batch in (single, mixed, base):  # warm up every path once
        await g.generate_mixed(batch, stop_at_newline=False, max_new_tokens=2)
    rates: dict[str, list[float]] = {"single": [], "mixed": [], "base": []}
    cpu_rates: dict[str, list[float]] = {"single": [], "mixed": [], "base": []}
    for r in range(repeats):
        for name, batch in (("single", single), ("mixed", mixed), ("base", base)):
            started, cpu = time.perf_counter(), time.process_time()
            out = await g.generate_mixed(batch, seed=r, **kw)
            took, cpu_took = time.perf_counter() - started, time.process_time() - cpu
            tokens = sum(s.tokens for group in out for s in group)
            rates[name].append(tokens / took)
            cpu_rates[name].append(tokens / cpu_took)
    ratios = [s / m for s, m in zip(rates["single"], rates["mixed"], strict=True)]
    cpu_ratios = [s / m for s, m in zip(cpu_rates["single"], cpu_rates["mixed"], strict=True)]
    return {
        "rows": len(refs),
        "tokens_per_row": tokens,
        "prompt_tokens": prompt_len,
        "single_tok_s": spread(rates["single"]),
        "mixed_tok_s": spread(rates["mixed"]),
        "base_tok_s": spread(rates["base"]),
        "mixed_cost_x": spread(ratios),
        # per CPU-second of this process: what a shared, busy machine does not blur
        "single_tok_cpu_s": spread(cpu_rates["single"]),
        "mixed_tok_cpu_s": spread(cpu_rates["mixed"]),
        "mixed_cost_cpu_x": spread(cpu_ratios),
    }


def load_times(g: Generator, refs: list[str], paths: dict[str, Path], repeats: int) -> dict:
    """On the model thread: cold loads (evict, then load from disk) and resident hits, in ms."""
    cold, cold_cpu, hit = [], [], []
    for _ in range(repeats):
        for ref in refs:
            assert g._unload_sync(ref)  # evict it, as the LRU would
            started, cpu = time.perf_counter(), time.process_time()
            g._ensure_resident(ref, paths[ref])
            g._resident.touch(ref)
            cold.append((time.perf_counter() - started) * 1000)
            cold_cpu.append((time.process_time() - cpu) * 1000)
            started = time.perf_counter()
            g._ensure_resident(ref, paths[ref])
            g._resident.touch(ref)
            hit.append((time.perf_counter() - started) * 1000)
    return {
        "cold_load_ms": spread(cold),
        "cold_load_cpu_ms": spread(cold_cpu),
        "hit_ms": spread(hit),
        "loads": len(cold),
    }


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rank", type=int, default=ModelSettings.lora_rank)
    p.add_argument("--tokens", type=int, default=32, help="new tokens per row")
    p.add_argument("--prompt", type=int, default=16, help="prompt tokens per row")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    p.add_argument(
        "--threads", type=int, default=None, help="torch threads (1: CPU time is the work, even on a busy box)"
    )
    p.add_argument("--mixed", choices=("peft", "batched"), default="peft", help="how a mixed batch runs")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    config = GPT2Config(vocab_size=50257, bos_token_id=0, eos_token_id=0)
    store = AdapterStore(Path(tempfile.mkdtemp()) / "adapters")
    paths = make_adapters(store, config, args.rank, ADAPTERS + 1)
    refs = [f"g{i}/v0001" for i in range(ADAPTERS)]
    by_ref = dict(zip([*refs, "commons/v0001"], paths, strict=True))
    model = GPT2LMHeadModel(config).eval()
    loaded = LoadedModel(model, _Tok(), "cpu", "none", "gpt2-124m-random")
    params = SamplingParams(top_k=0, top_p=1.0, no_repeat_ngram=0)
    g = Generator(loaded, params, keep_loaded=ADAPTERS + 1, lora_rank=args.rank, resolver=by_ref.get)

    # the first adapter wraps the base model in peft (once per process); then one more, to measure memory
    rss0 = rss_bytes()
    first_ms = await g.preload("commons/v0001", pin=False) * 1000
    rss1 = rss_bytes()
    for ref in refs:
        await g.preload(ref, pin=False)
    rss2 = rss_bytes()
    tensor_bytes = sum(
        t.numel() * t.element_size()
        for name, t in g._peft.named_parameters()
        if "lora_" in name and name.split(".")[-2] == peft_name(refs[0])
    )
    await g.use_adapter(refs[0], None)  # the single-adapter batch runs the ordinary path with it active

    g.mixed_batches = args.mixed
    tput = await throughput(g, refs, args.tokens, args.repeats, args.prompt)
    await g.use_adapter("base", None)  # none serving: every adapter can be evicted and cold-loaded
    loads = await g._run(load_times, g, refs, by_ref, args.repeats)
    await g.close()

    result = {
        "model": "gpt2-124m shape (random init)",
        "rank": args.rank,
        "mixed_batches": args.mixed,
        "threads": torch.get_num_threads(),
        "throughput": tput,
        "first_adapter_ms": first_ms,
        **loads,
        "adapter_tensor_mb": tensor_bytes / 1e6,
        "rss_mb_per_adapter": (rss2 - rss1) / 1e6 / ADAPTERS,
        "rss_mb_peft_wrap": (rss1 - rss0) / 1e6,
        "bars": {"mixed_cost_x_max": 1.3, "cold_load_ms_max": 200},
    }
    t, m = tput, lambda d: f"{d['median']:.1f} [{d['min']:.1f}-{d['max']:.1f}]"
    print(
        f"GPT-2 124M shape, LoRA rank {args.rank}, {t['rows']} rows x {t['tokens_per_row']} new tokens "
        f"(prompt {t['prompt_tokens']}), {args.repeats} interleaved repeats, torch threads {result['threads']}"
    )
    print(f"{'batch of ' + str(t['rows']):<44}{'tok/s median [min-max]':>26}")
    print(f"{'single adapter (baseline)':<44}{m(t['single_tok_s']):>26}")
    print(f"{'mixed: 8 different adapters':<44}{m(t['mixed_tok_s']):>26}")
    print(f"{'base model, no adapter':<44}{m(t['base_tok_s']):>26}")
    c = t["mixed_cost_x"]
    ok = "PASS" if c["median"] <= 1.3 else "FAIL"
    print(
        f"mixed cost = single tok/s / mixed tok/s: {c['median']:.3f}x [{c['min']:.3f}-{c['max']:.3f}] "
        f"(bar <= 1.3x: {ok})"
    )
    cc = t["mixed_cost_cpu_x"]
    print(
        f"  per CPU-second: single {m(t['single_tok_cpu_s'])}, mixed {m(t['mixed_tok_cpu_s'])} tok; "
        f"cost {cc['median']:.3f}x [{cc['min']:.3f}-{cc['max']:.3f}]"
    )
    cold, hit = result["cold_load_ms"], result["hit_ms"]
    ok = "PASS" if cold["median"] < 200 else "FAIL"
    print(
        f"cold load from disk: {cold['median']:.1f} ms median [{cold['min']:.1f}-{cold['max']:.1f}] over "
        f"{result['loads']} loads (bar < 200 ms: {ok}); resident hit {hit['median'] * 1000:.1f} us median"
    )
    cpu = result["cold_load_cpu_ms"]
    print(f"  cold load CPU time: {cpu['median']:.1f} ms median [{cpu['min']:.1f}-{cpu['max']:.1f}]")
    print(f"first adapter (wraps the base in peft, once per process): {first_ms:.0f} ms")
    print(
        f"memory per resident adapter: {result['adapter_tensor_mb']:.2f} MB of LoRA tensors; "
        f"RSS growth {result['rss_mb_per_adapter']:.2f} MB per adapter over {ADAPTERS} loads"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
