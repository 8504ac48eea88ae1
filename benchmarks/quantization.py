"""Quantization: fp32 against 4-bit NF4 (and 8-bit LLM.int8()) on the tiny model and on GPT-2's 124M shape, one run.

    python benchmarks/quantization.py [--shapes tiny,124m] [--modes none,4bit,8bit] [--tokens 32] [--json PATH]
                                      [--lift]

Every (shape, mode) runs in fresh child processes, loaded through the bot's own path (`load_base`, device "cpu"):
- serve: resident memory the loaded model adds to the process (RSS after its first generations minus RSS after
  the imports) and its parameter footprint; tokens/s at batch 1 and 8 (no stop at a newline, no decoding guard:
  the model's cost); the time to load an adapter from disk into the Generator and to switch between two resident
  ones;
- train: a night's training through `train_adapter` on 64 posts (synthetic ids and rewards, 32 tokens each; the
  default batch of 16, so 4 steps, then the gate's samples): peak resident memory above the imports (ru_maxrss), and
  seconds per step (between consecutive progress events).
First, per shape, tokens/s of every mode loaded side by side in one process with their calls interleaved (16 new
tokens, two rounds): the fair speed comparison on a shared machine. On the tiny model, also the per-token KL
between the fp32 and the 4-bit base carrying the same adapter (one trained on each base by the train children),
summed over the whole vocabulary at every position of 32 samples.
GPT-2's 124M shape has random weights (the shape sets the cost) and the tiny model's tokenizer.

`--lift` also runs `kilroy simulate --audience realistic --seeds 5` per mode on the tiny model (long: 5-20 minutes
each on 2 cores) and reports the lift with its 95% interval. Figures and what they mean: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def rss() -> int:
    """This process's resident memory now, in bytes (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def peak_rss() -> int:
    """This process's peak resident memory so far, in bytes (ru_maxrss is in kB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _imports() -> int:
    """Import everything a load touches, so the RSS that follows is the model's; return RSS after the imports."""
    import gc

    import bitsandbytes  # noqa: F401
    import peft  # noqa: F401
    import torch
    import transformers  # noqa: F401

    torch.set_num_threads(os.cpu_count() or 1)
    gc.collect()
    return rss()


# ---- children ----------------------------------------------------------------------------------------------------


async def _rate(loaded, batch: int, tokens: int, repeats: int = 3) -> float:
    """Tokens/s, the best of `repeats` calls: on a shared machine the fastest call is the least disturbed."""
    from bot.engine.generator import Generator, SamplingParams

    g = Generator(loaded, SamplingParams(max_new_tokens=tokens, top_k=0, top_p=1.0, no_repeat_ngram=0))
    try:
        await g.generate(1, stop_at_newline=False, max_new_tokens=4)  # warm up
        rates = []
        for r in range(repeats):
            start = time.perf_counter()
            samples = await g.generate(batch, stop_at_newline=False, seed=r)
            rates.append(sum(s.tokens for s in samples) / (time.perf_counter() - start))
        return max(rates)
    finally:
        await g.close()


async def serve_child(model_dir: str, mode: str, tokens: int, adapters: list[str]) -> dict:
    """Load, measure resident memory, tokens/s at batch 1 and 8, adapter load and switch times."""
    from bot.config.settings import ModelSettings
    from bot.engine.generator import Generator, SamplingParams
    from bot.engine.model import load_base

    before = _imports()
    loaded = load_base(ModelSettings(name=model_dir, quantization=mode), Path(tempfile.mkdtemp()), device="cpu")
    model = loaded.model
    embedding = sum(p.numel() * p.element_size() for p in model.transformer.wte.parameters())
    rate_b1 = await _rate(loaded, 1, tokens)
    # after a generation, not right after the load: safetensors are memory-mapped, so fp32 weights only become
    # resident once a forward pass touches them (a 4-bit load quantizes, and so touches, everything at once)
    resident = rss() - before
    out = {
        "resident_bytes": resident,
        "footprint_bytes": model.get_memory_footprint(),
        "embedding_bytes": embedding,
        "tokens_per_s_b1": rate_b1,
        "tokens_per_s_b8": await _rate(loaded, 8, tokens),
    }
    g = Generator(loaded, SamplingParams(max_new_tokens=4), keep_loaded=3)
    try:
        loads = [await g.use_adapter(f"a{i}", Path(p)) for i, p in enumerate(adapters)]
        switches = [await g.use_adapter(f"a{i % len(adapters)}", None) for i in range(6)]
        await g.health_check()
    finally:
        await g.close()
    out["adapter_load_s"] = statistics.median(loads)
    out["adapter_switch_s"] = statistics.median(switches)
    return out


def speed_child(model_dir: str, modes: list[str], tokens: int, rounds: int = 2) -> dict:
    """Tokens/s of every mode loaded side by side in one process, calls interleaved round by round: on a shared
    machine each mode then meets the same load, which one child per mode, run one after another, does not."""
    import torch

    from bot.config.settings import ModelSettings
    from bot.engine.generator import SamplingParams, sample_batch
    from bot.engine.model import load_base

    _imports()
    tmp = Path(tempfile.mkdtemp())
    loaded = {m: load_base(ModelSettings(name=model_dir, quantization=m), tmp, device="cpu") for m in modes}
    params = SamplingParams(max_new_tokens=tokens, top_k=0, top_p=1.0, no_repeat_ngram=0)

    def rate(m: str, n: int) -> float:
        torch.manual_seed(0)
        start = time.perf_counter()
        out = sample_batch(
            loaded[m].model,
            loaded[m].tokenizer,
            prompt="",
            n=n,
            params=params,
            stop_at_newline=False,
            context_size=loaded[m].context_size,
            adapter="x",
        )
        return sum(s.tokens for s in out) / (time.perf_counter() - start)

    for m in modes:  # warm up
        rate(m, 1)
    rates: dict = {m: {"b1": [], "b8": []} for m in modes}
    for _ in range(rounds):
        for m in modes:
            rates[m]["b1"].append(rate(m, 1))
            rates[m]["b8"].append(rate(m, 8))
    return {m: {k: statistics.median(v) for k, v in r.items()} for m, r in rates.items()}


def train_child(model_dir: str, mode: str, posts: int, tokens: int, out_dir: str) -> dict:
    """A night's training (train_adapter: load, steps, the gate's samples, save) on `posts` synthetic posts."""
    import random

    from bot.config.settings import GenerationSettings, ModelSettings, TrainingSettings
    from bot.training.dataset import TrainingExample
    from bot.training.trainer import train_adapter

    before = _imports()
    rng = random.Random(0)
    # ids below 1474 exist in both vocabularies (the tiny tokenizer's); the rewards are centred like real ones
    examples = [
        TrainingExample(i, (0,), tuple(rng.randrange(1, 1474) for _ in range(tokens)), rng.choice((-1.0, 1.0)))
        for i in range(posts)
    ]
    stamps: list[float] = []

    def progress(event: dict) -> None:
        if event.get("stage") == "train":
            stamps.append(time.perf_counter())

    started = time.perf_counter()
    candidate = train_adapter(
        examples,
        model_settings=ModelSettings(name=model_dir, quantization=mode),
        training=TrainingSettings(gate_samples=8),
        generation=GenerationSettings(max_new_tokens=tokens),
        data_dir=Path(tempfile.mkdtemp()),
        parent_path=None,
        out_dir=Path(out_dir),
        on_progress=progress,
    )
    steps = [b - a for a, b in itertools.pairwise(stamps)]
    return {
        "train_peak_bytes": peak_rss() - before,
        "train_step_s": statistics.median(steps) if steps else float("nan"),
        "train_steps": len(stamps),
        "night_s": time.perf_counter() - started,
        "loss": candidate.metrics["loss"],
    }


def kl_child(model_dir: str, adapter: str, tokens: int, samples: int = 32) -> dict:
    """Per-token KL(fp32 base + adapter || 4-bit base + adapter), exact over the vocabulary, on the fp32 pair's own
    samples; and the same for the two bases without the adapter."""
    import torch
    from peft import PeftModel

    from bot.config.settings import ModelSettings
    from bot.engine.generator import SamplingParams, sample_batch
    from bot.engine.model import load_base

    _imports()
    tmp = Path(tempfile.mkdtemp())
    full = load_base(ModelSettings(name=model_dir, quantization="none"), tmp, device="cpu")
    quant = load_base(ModelSettings(name=model_dir, quantization="4bit"), tmp, device="cpu")
    p_model = PeftModel.from_pretrained(full.model, adapter).eval()
    q_model = PeftModel.from_pretrained(quant.model, adapter).eval()
    torch.manual_seed(0)
    drawn = sample_batch(
        p_model,
        full.tokenizer,
        prompt="",
        n=samples,
        params=SamplingParams(max_new_tokens=tokens),
        stop_at_newline=True,
        context_size=full.context_size,
        adapter="x",
    )
    seqs = [list(s.prompt_ids) + list(s.completion_ids) for s in drawn if s.completion_ids]

    def kl(p_net, q_net, adapter_on: bool) -> float:
        total, count = 0.0, 0
        with torch.no_grad():
            for seq in seqs:
                ids = torch.tensor([seq])
                if adapter_on:
                    lp, lq = p_net(input_ids=ids).logits, q_net(input_ids=ids).logits
                else:
                    with p_net.disable_adapter(), q_net.disable_adapter():
                        lp, lq = p_net(input_ids=ids).logits, q_net(input_ids=ids).logits
                # positions that predict a completion token: (T-1, V)
                lp, lq = lp[0, :-1].log_softmax(-1).float(), lq[0, :-1].log_softmax(-1).float()
                total += float((lp.exp() * (lp - lq)).sum())
                count += lp.shape[0]
        return total / max(1, count)

    return {"kl_with_adapter": kl(p_model, q_model, True), "kl_bases": kl(p_model, q_model, False)}


# ---- the parent ---------------------------------------------------------------------------------------------------


def _child(*args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "TOKENIZERS_PARALLELISM": "false", "TRANSFORMERS_VERBOSITY": "error"},
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child {args[0]} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _model_dirs(tmp: Path, shapes: list[str]) -> dict[str, str]:
    """The tiny model from data/ (built if missing) and a random GPT-2-124M-shaped one saved with its tokenizer."""
    from bot.engine.model import resolve_model_path

    tiny = resolve_model_path("tiny", ROOT / "data")
    out = {}
    if "tiny" in shapes:
        out["tiny"] = tiny
    if "124m" in shapes:
        import torch
        from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

        torch.manual_seed(0)
        model = GPT2LMHeadModel(GPT2Config(vocab_size=50257, bos_token_id=0, eos_token_id=0, pad_token_id=0))
        path = tmp / "gpt2-124m-random"
        model.save_pretrained(path)
        AutoTokenizer.from_pretrained(tiny).save_pretrained(path)
        out["124m"] = str(path)
    return out


def _adapters(model_dir: str, root: Path) -> list[str]:
    """Two random rank-8 LoRA adapters for the model, written as the store writes them."""
    from bot.adapters.store import AdapterStore
    from bot.config.settings import ModelSettings
    from bot.engine.model import load_base
    from tests.support.adapters import make_adapter

    store = AdapterStore(root)
    loaded = load_base(ModelSettings(name=model_dir, quantization="none"), root, device="cpu")
    return [str(store.path(make_adapter(loaded, store, seed, rank=8))) for seed in (1, 2)]


def _lift(mode: str, tmp: Path) -> dict:
    out = tmp / f"lift-{mode}.json"
    env = {**os.environ, "KILROY_QUANTIZATION": mode}
    cmd = [sys.executable, "-m", "bot", "simulate", "--audience", "realistic", "--seeds", "5", "--json", str(out)]
    subprocess.run([*cmd, "--workdir", str(tmp / f"sim-{mode}")], cwd=ROOT, env=env, check=True, capture_output=True)
    data = json.loads(out.read_text())
    return {"lift": data["lift"], "lift_ci": data["lift_ci"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shapes", default="tiny,124m", help="comma-separated: tiny, 124m (default both)")
    p.add_argument("--modes", default="none,4bit,8bit", help="comma-separated: none (fp32), 4bit, 8bit")
    p.add_argument("--tokens", type=int, default=32, help="new tokens per sample and tokens per training post")
    p.add_argument("--posts", type=int, default=64, help="posts in the night's training (default 64)")
    p.add_argument("--lift", action="store_true", help="also run simulate --seeds 5 per mode (long)")
    p.add_argument("--interleaved-only", action="store_true", help="only the interleaved tokens/s (a few minutes)")
    p.add_argument("--json", type=Path, help="write every figure here")
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "serve":
            result = asyncio.run(serve_child(rest[0], rest[1], int(rest[2]), rest[3].split(",")))
        elif kind == "train":
            result = train_child(rest[0], rest[1], int(rest[2]), int(rest[3]), rest[4])
        elif kind == "speed":
            result = speed_child(rest[0], rest[1].split(","), int(rest[2]))
        else:
            result = kl_child(rest[0], rest[1], int(rest[2]))
        print(json.dumps(result))
        return

    import logging

    logging.basicConfig(level=logging.WARNING)
    shapes, modes = args.shapes.split(","), args.modes.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="kilroy-quant-"))
    started = time.perf_counter()
    dirs = _model_dirs(tmp, shapes)
    results: dict = {"shapes": {}, "tokens": args.tokens, "posts": args.posts}
    results["interleaved"] = {}
    for shape, model_dir in dirs.items():
        # 16 new tokens: three 124M models generating side by side on 2 cores take minutes otherwise
        speeds = _child("speed", model_dir, ",".join(modes), "16")
        results["interleaved"][shape] = speeds
        print(f"{shape} interleaved: {json.dumps(speeds)}", file=sys.stderr)
        if args.interleaved_only:
            continue
        adapters = _adapters(model_dir, tmp / f"adapters-{shape}")
        rows = {}
        for mode in modes:
            trained = tmp / f"trained-{shape}-{mode}"
            row = _child("serve", model_dir, mode, str(args.tokens), ",".join(adapters))
            row.update(_child("train", model_dir, mode, str(args.posts), str(args.tokens), str(trained)))
            rows[mode] = row
            print(f"{shape} {mode}: {json.dumps({k: round(v, 4) for k, v in row.items()})}", file=sys.stderr)
        results["shapes"][shape] = rows
        if shape == "tiny" and "4bit" in modes and "none" in modes:
            results["kl_tiny"] = {
                f"adapter_trained_on_{mode}": _child("kl", model_dir, str(tmp / f"trained-tiny-{mode}"), "32")
                for mode in ("4bit", "none")
            }
    if args.lift:
        results["lift"] = {mode: _lift(mode, tmp) for mode in modes if mode in ("none", "4bit")}
    results["seconds"] = time.perf_counter() - started
    _print(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def _print(results: dict) -> None:
    mb = 1024**2
    print(
        f"{'shape':6} {'mode':5} {'footprint':>10} {'resident':>9} {'train peak':>10} {'tok/s b1':>9} "
        f"{'tok/s b8':>9} {'s/step':>7} {'load ms':>8} {'switch ms':>9}"
    )
    for shape, rows in results["shapes"].items():
        fp32 = rows.get("none")
        for mode, r in rows.items():
            print(
                f"{shape:6} {mode:5} {r['footprint_bytes'] / mb:7.1f}MiB {r['resident_bytes'] / mb:6.1f}MiB "
                f"{r['train_peak_bytes'] / mb:7.1f}MiB {r['tokens_per_s_b1']:9.1f} {r['tokens_per_s_b8']:9.1f} "
                f"{r['train_step_s']:7.2f} {r['adapter_load_s'] * 1000:8.1f} {r['adapter_switch_s'] * 1000:9.1f}"
            )
        if fp32:
            for mode, r in rows.items():
                if mode == "none":
                    continue
                ratios = (
                    r["footprint_bytes"] / fp32["footprint_bytes"],
                    r["resident_bytes"] / max(1, fp32["resident_bytes"]),
                    r["train_peak_bytes"] / max(1, fp32["train_peak_bytes"]),
                    r["tokens_per_s_b1"] / fp32["tokens_per_s_b1"],
                    r["tokens_per_s_b8"] / fp32["tokens_per_s_b8"],
                    r["train_step_s"] / fp32["train_step_s"],
                )
                print(
                    f"  {shape} {mode}/fp32: footprint {ratios[0]:.2f}x, resident {ratios[1]:.2f}x, train peak "
                    f"{ratios[2]:.2f}x, tokens/s {ratios[3]:.2f}x (b1) {ratios[4]:.2f}x (b8), s/step {ratios[5]:.2f}x"
                )
    for shape, speeds in results.get("interleaved", {}).items():
        fp32 = speeds.get("none")
        for mode, r in speeds.items():
            ratio = (
                f" ({r['b1'] / fp32['b1']:.2f}x, {r['b8'] / fp32['b8']:.2f}x fp32)" if fp32 and mode != "none" else ""
            )
            print(f"{shape} {mode} interleaved: tokens/s {r['b1']:.1f} (b1) {r['b8']:.1f} (b8){ratio}")
    for name, kl in results.get("kl_tiny", {}).items():
        print(
            f"tiny, {name}: per-token KL(fp32 base+adapter || 4-bit base+adapter) {kl['kl_with_adapter']:.4f}; "
            f"bases alone {kl['kl_bases']:.4f}"
        )
    for mode, lift in results.get("lift", {}).items():
        print(f"lift ({mode}): {lift['lift']:.2f} [{lift['lift_ci'][0]:.2f}, {lift['lift_ci'][1]:.2f}] over 5 seeds")
    print(f"{results['seconds']:.0f}s")


if __name__ == "__main__":
    main()
