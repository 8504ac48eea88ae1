"""A post on a 124M-shape model beside a training, with the serving thread on every core or on its half.

    python benchmarks/cores.py [--reps 3]

The offline tiny models are too small for torch's thread pools to matter, so this builds GPT-2's 124M shape with
random weights (no download) and times one post's generation (2 candidates x 24 tokens, as compose_post samples)
idle and beside a stand-in for the training worker (a process at nice 10 with its half of the cores, multiplying
matrices of GPT-2's MLP shape without pause), for each serving thread count: torch's own (every core) and the
bot's share while a training runs (bot/engine/threads.py). Interleaved, several repetitions, medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

from bot.engine.threads import available_cpus, split_cores

BURNER = (
    "import os, torch\n"
    "os.nice(10)\n"
    "torch.set_num_threads({threads})\n"
    "a, b = torch.randn(768, 3072), torch.randn(3072, 768)\n"
    "while True:\n"
    "    a @ b\n"
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--reps", type=int, default=3, help="repetitions of each (idle, beside) pair (default 3)")
    args = p.parse_args()

    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config()).eval()
    ids = torch.randint(0, 50_000, (2, 16))

    def post() -> float:
        t = time.perf_counter()
        with torch.inference_mode():
            model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                do_sample=True,
                max_new_tokens=24,
                min_new_tokens=24,
                pad_token_id=0,
            )
        return time.perf_counter() - t

    serving, training = split_cores(available_cpus())
    own = torch.get_num_threads()
    counts = sorted({own, serving}, reverse=True)
    post()  # warm-up
    results: dict[int, list[tuple[float, float]]] = {n: [] for n in counts}
    for rep in range(args.reps):
        for n in counts:
            torch.set_num_threads(n)
            idle = post()
            burner = subprocess.Popen([sys.executable, "-c", BURNER.format(threads=training)])
            try:
                time.sleep(1.0)
                beside = post()
            finally:
                burner.kill()
                burner.wait()
            results[n].append((idle, beside))
            print(
                f"rep {rep} serving threads {n}: idle {idle:.2f} s, beside a training {beside:.2f} s "
                f"({beside / idle:.2f}x), load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    print(f"cores {available_cpus()}: torch's own count {own}, the split {serving} serving / {training} training")
    for n, pairs in results.items():
        idle = statistics.median(i for i, _ in pairs)
        beside = statistics.median(b for _, b in pairs)
        print(f"serving threads {n}: median idle {idle:.2f} s, beside a training {beside:.2f} s ({beside / idle:.2f}x)")
    idle_all = statistics.median(i for i, _ in results[own])
    beside_share = statistics.median(b for _, b in results[serving])
    print(
        f"the bot's policy (every core idle, its share during a training): idle {idle_all:.2f} s, beside a training "
        f"{beside_share:.2f} s ({beside_share / idle_all:.2f}x)"
    )


if __name__ == "__main__":
    main()
