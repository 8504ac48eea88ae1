"""Learning benchmark: our nightly trainer against Kilroy's REINFORCE recipe (and TRL's KTO), fairly.

    python benchmarks/learning.py            # tune learning rates on --tune audiences, report on --report ones
    python benchmarks/learning.py --quick    # a smoke run: 1 audience x 1 seed x 3 nights x 24 posts, no tuning

Fairness rules:
- every trainer meets the same simulated community (`publish_night` through the real Storage and scoring), the
  same posts per night, nights and seeds;
- every tuned trainer trains a LoRA adapter of the same shape and gets the same gradient-step budget a night:
  ceil(posts / batch) x epochs of the shipped settings (ours may take fewer: it skips nights without signal);
- learning rates are chosen on the tuning audiences and seeds (best mean lift among the rates that keep
  distinct-2 at >= 80% of night 0), then reported on different audiences and seeds;
- an lr-0 row (ours with learning rate 0) shows what no learning measures;
- Kilroy's recipe is also shown at its published setting (one Adam step of 1e-5 a night, full fine-tuning with
  the lower half frozen).

Columns, mean and 95% CI over the report runs: lift (final over night-0 expected score of fresh samples, the
audience's analytic engagement), KL of the final policy to the base (nats per token), distinct-2 and repeat3 of the
final policy's samples over night 0's. KTO needs the optional `bench` extra (`pip install -e '.[bench]'`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from bot.adapters.store import BASE
from bot.config.settings import Settings, load_settings
from bot.domain.scoring import normalise_rewards, score_post
from bot.engine.generator import Sample, SamplingParams, sample_batch
from bot.engine.model import load_base, lora_config
from bot.logs import setup_logging
from bot.sim.nights import DAY, EPOCH, AudienceSpec, builtin_audiences, gate_only, mean_ci, publish_night
from bot.storage import PostRecord, Storage
from bot.training.objective import distinct_n, repeat3, token_logprobs
from bot.training.trainer import _batch


def _sample(model: Any, loaded: Any, settings: Settings, n: int, seed: int, adapter: str) -> list[Sample]:
    torch.manual_seed(seed)
    model.eval()
    return sample_batch(
        model,
        loaded.tokenizer,
        prompt="",
        n=n,
        params=SamplingParams.from_settings(settings.generation),
        stop_at_newline=True,
        context_size=loaded.context_size,
        adapter=adapter,
    )


def steps_per_night(settings: Settings, posts: int) -> int:
    """The shipped trainer's gradient steps for a night of `posts` posts: every tuned trainer gets this many."""
    t = settings.training
    return math.ceil(posts / t.batch_size) * t.epochs


# --- the trainers behind one small interface -------------------------------------------------------------------------


class Ours:
    """The nightly trainer as it ships: run_training (reward model, REINFORCE + KL, gate) and a hot swap."""

    name = "ours"

    def __init__(self, settings: Settings, lr: float | None = None) -> None:
        self.settings, self.lr = settings, lr

    async def setup(self, storage: Storage, workdir: Path) -> None:
        import contextlib
        import dataclasses

        from bot.services import open_services

        if self.lr is not None:
            self.settings = self.settings.replace(
                training=dataclasses.replace(self.settings.training, learning_rate=self.lr)
            )
        self.settings = gate_only(self.settings)  # as the offline nights run it
        # the bot's own composition root: model, generator, storage, adapter store, training runner
        self._stack = contextlib.AsyncExitStack()
        self.services = await self._stack.enter_async_context(open_services(self.settings, in_process_training=True))
        self.store = self.services.adapter_store

    async def generate(self, n: int, seed: int) -> list[Sample]:
        return await self.services.generator.generate(n, seed=seed)

    async def train(self, night_records: list[PostRecord], now: float) -> None:
        # the bot's path: training lock, reconcile, run_training, the promotion sequence
        await self.services.training.run("bench", now=now)

    def policy(self) -> Any:
        from peft import PeftModel

        base = load_base(self.settings.model, self.settings.data_dir, device="cpu").model
        name = self.store.current()
        return base if name == BASE else PeftModel.from_pretrained(base, str(self.store.path(name)))

    async def close(self) -> None:
        await self._stack.aclose()


class KilroyRecipe:
    """Kilroy's recipe: REINFORCE, reward = z-score over the last 1,000 scores (first reward 0), loss = -(sum of
    token log-probs) x reward averaged over the batch, no clipping, no KL.

    Published setting (`lora=False`): one Adam step per night at lr 1e-5, full fine-tuning with the lower half of
    the transformer blocks frozen. Tuned (`lora=True`): the same reward and loss on a LoRA of our shape, with our
    step budget a night (minibatches of our batch size) at a tuned learning rate.
    """

    def __init__(self, settings: Settings, lr: float = 1e-5, *, lora: bool = False) -> None:
        self.settings, self.lr, self.lora = settings, lr, lora
        self.name = "kilroy-lora" if lora else "kilroy"
        self.window: list[float] = []

    async def setup(self, storage: Storage, workdir: Path) -> None:
        self.loaded = load_base(self.settings.model, self.settings.data_dir, device="cpu")
        if self.lora:
            from peft import get_peft_model

            self.model = get_peft_model(self.loaded.model, lora_config(self.settings.model))
        else:
            self.model = self.loaded.model
            blocks = self.model.transformer.h
            for block in blocks[: len(blocks) // 2]:
                for p in block.parameters():
                    p.requires_grad_(False)
        self.opt = torch.optim.Adam([p for p in self.model.parameters() if p.requires_grad], lr=self.lr)
        self.formula = self.settings.scoring
        self.rng = random.Random(self.settings.training.seed)

    async def generate(self, n: int, seed: int) -> list[Sample]:
        return _sample(self.model, self.loaded, self.settings, n, seed, self.name)

    def _reward(self, score: float) -> float:
        window = self.window[-1000:]
        self.window.append(score)
        if not window:
            return 0.0
        mean, std = statistics.mean(window), statistics.pstdev(window)
        return 0.0 if std == 0 else (score - mean) / std

    def _step(self, examples: list[Any]) -> None:
        ids, attn, labels, reward = _batch(examples, self.loaded.tokenizer.pad_token_id, "cpu")
        logp, _ = token_logprobs(self.model(input_ids=ids, attention_mask=attn).logits, labels)
        loss = -(logp.sum(-1) * reward).mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()

    async def train(self, night_records: list[PostRecord], now: float) -> None:
        from bot.training.dataset import TrainingExample

        examples = [
            TrainingExample(
                r.post.id, r.post.prompt_ids, r.post.completion_ids, self._reward(score_post(r, self.formula))
            )
            for r in night_records
            if r.post.completion_ids
        ]
        # eval mode throughout, as ours trains: GPT-2's dropout would only add noise here
        self.model.eval()
        if not self.lora:
            self._step(examples)
            return
        batch = self.settings.training.batch_size
        order: list[Any] = []
        for _ in range(steps_per_night(self.settings, len(examples))):
            if len(order) < batch:
                fresh = list(examples)
                self.rng.shuffle(fresh)
                order += fresh
            chunk, order = order[:batch], order[batch:]
            self._step(chunk)

    def policy(self) -> Any:
        return self.model

    async def close(self) -> None:
        return None


class KTO:
    """TRL's KTOTrainer with a LoRA: top third of the night's normalised scores desirable, bottom third undesirable,
    middle dropped; the base model (adapter disabled) as the fixed reference; CPU-safe settings."""

    name = "kto"

    def __init__(self, settings: Settings, lr: float = 5e-4) -> None:
        self.settings, self.lr = settings, lr
        self.adapter_dir: Path | None = None

    async def setup(self, storage: Storage, workdir: Path) -> None:
        self.workdir = workdir
        self.formula = self.settings.scoring
        self._load()

    def _load(self, trainable: bool = False) -> None:
        from peft import PeftModel, get_peft_model

        self.loaded = load_base(self.settings.model, self.settings.data_dir, device="cpu")
        if self.adapter_dir is None:
            self.model = get_peft_model(self.loaded.model, lora_config(self.settings.model))
        else:
            self.model = PeftModel.from_pretrained(self.loaded.model, str(self.adapter_dir), is_trainable=trainable)

    async def generate(self, n: int, seed: int) -> list[Sample]:
        return _sample(self.model, self.loaded, self.settings, n, seed, self.name)

    async def train(self, night_records: list[PostRecord], now: float) -> None:
        from datasets import Dataset
        from trl import KTOConfig, KTOTrainer

        scores = [score_post(r, self.formula) for r in night_records]
        rewards = normalise_rewards(scores, [r.post.channel_id for r in night_records])
        order = sorted(range(len(rewards)), key=lambda i: rewards[i])
        third = len(order) // 3
        rows = [
            {"prompt": "<|endoftext|>", "completion": night_records[i].post.text + "\n", "label": False}
            for i in order[:third]
        ]
        rows += [
            {"prompt": "<|endoftext|>", "completion": night_records[i].post.text + "\n", "label": True}
            for i in order[-third:]
        ]
        if not rows:
            return
        # a fresh trainable copy each night, starting from yesterday's adapter; the reference is the base
        if self.adapter_dir is not None:
            self._load(trainable=True)
        args = KTOConfig(
            output_dir=str(self.workdir / "kto"),
            per_device_train_batch_size=8,
            max_steps=steps_per_night(self.settings, len(night_records)),
            learning_rate=self.lr,
            bf16=False,
            fp16=False,
            report_to=[],
            logging_steps=1000,
            save_strategy="no",
            max_length=64,
            disable_tqdm=True,
            use_cpu=True,
            seed=self.settings.training.seed,
        )
        trainer = KTOTrainer(
            model=self.model, args=args, train_dataset=Dataset.from_list(rows), processing_class=self.loaded.tokenizer
        )
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
        await asyncio.to_thread(trainer.train)
        self.adapter_dir = self.workdir / f"kto-adapter-{int(now)}"
        self.model.save_pretrained(str(self.adapter_dir))
        self._load()

    def policy(self) -> Any:
        return self.model

    async def close(self) -> None:
        return None


# --- the shared nights loop ------------------------------------------------------------------------------------------


@dataclass
class Run:
    trainer: str
    lr: float
    audience: str
    seed: int
    lift: float  # final / night-0 expected score of fresh samples
    kl: float
    d2_ratio: float
    repeat3_0: float
    repeat3: float
    seconds: float


@dataclass
class Snapshot:
    expected: float
    distinct2: float
    repeat3: float
    kl: float


def snapshot(policy: Any, settings: Settings, community: Any, seed: int, n: int) -> Snapshot:
    """Fresh samples of `policy` (fixed seed): expected score, distinct-2, repeat3, and per-token KL to the base."""
    from bot.training.dataset import TrainingExample

    base = load_base(settings.model, settings.data_dir, device="cpu")
    samples = _sample(policy, base, settings, n, seed, "eval")
    texts = [s.text for s in samples]
    examples = [TrainingExample(0, s.prompt_ids, s.completion_ids, 0.0) for s in samples if s.completion_ids]
    total, tokens = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(examples), 64):
            ids, attn, labels, _ = _batch(examples[i : i + 64], base.tokenizer.pad_token_id, "cpu")
            logp, mask = token_logprobs(policy(input_ids=ids, attention_mask=attn).logits, labels)
            ref, _ = token_logprobs(base.model(input_ids=ids, attention_mask=attn).logits, labels)
            total += float(((logp - ref) * mask).sum())
            tokens += int(mask.sum())
    formula = settings.scoring
    return Snapshot(
        statistics.fmean(community.expected_scores(texts, formula)),
        distinct_n(texts),
        repeat3(texts),
        max(0.0, total / max(1, tokens)),
    )


async def run_nights(
    trainer: Any, settings: Settings, audience: AudienceSpec, *, nights: int, posts: int, seed: int, eval_samples: int
) -> Run:
    started = time.perf_counter()
    rng = random.Random(seed)
    community = audience.community(random.Random(f"{audience.name}/{seed}"))
    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        s = settings.replace(db_path=work / "k.db", adapters_dir=work / "adapters")
        trainer.settings = s.replace(training=_seeded(s, seed))
        message_id = 1
        eval_seed = seed * 7919 + 104_729
        async with Storage.open(s.db_path) as storage:
            await trainer.setup(storage, work)
            try:
                first = snapshot(trainer.policy(), s, community, eval_seed, eval_samples)
                for night in range(nights):
                    start = EPOCH + night * DAY
                    samples = await trainer.generate(posts, seed * 7919 + night)
                    records = await publish_night(
                        storage, community, samples, start=start, first_id=message_id, rng=rng
                    )
                    message_id += len(samples)
                    if night < nights - 1:
                        await trainer.train(records, start + DAY - 1)
                last = snapshot(trainer.policy(), s, community, eval_seed, eval_samples)
            finally:
                await trainer.close()
    return Run(
        trainer.name,
        getattr(trainer, "lr", 0.0) or 0.0,
        audience.name,
        seed,
        last.expected / first.expected if first.expected > 0 else math.inf,
        last.kl,
        last.distinct2 / first.distinct2 if first.distinct2 else 0.0,
        first.repeat3,
        last.repeat3,
        time.perf_counter() - started,
    )


def _seeded(settings: Settings, seed: int) -> Any:
    import dataclasses

    return dataclasses.replace(settings.training, seed=seed)


def make(name: str, settings: Settings, lr: float | None) -> Any:
    """A trainer by name; `lr` None means its default (ours: the shipped rate)."""
    if name == "ours":
        return Ours(settings, lr)
    if name == "lr0":
        t = Ours(settings, 0.0)
        t.name = "lr0"
        return t
    if name == "kilroy":
        return KilroyRecipe(settings)
    if name == "kilroy-lora":
        return KilroyRecipe(settings, lr if lr is not None else 1e-3, lora=True)
    if name == "kto":
        return KTO(settings, lr if lr is not None else 5e-4)
    raise ValueError(f"unknown trainer {name!r}")


GRIDS = {"ours": (1e-3, 3e-3, 1e-2), "kilroy-lora": (3e-4, 1e-3, 3e-3, 1e-2), "kto": (1e-4, 5e-4, 3e-3)}


def summarise(rows: list[Run]) -> dict[str, float]:
    lift, lo, hi = mean_ci([r.lift for r in rows])
    d2, d2lo, d2hi = mean_ci([r.d2_ratio for r in rows])
    kl, kllo, klhi = mean_ci([r.kl for r in rows])
    rep = statistics.fmean(r.repeat3 / max(r.repeat3_0, 1e-9) if r.repeat3_0 else 1.0 for r in rows)
    return {"lift": lift, "lift_lo": lo, "lift_hi": hi, "d2": d2, "d2_lo": d2lo, "d2_hi": d2hi, "kl": kl,
            "kl_lo": kllo, "kl_hi": klhi, "repeat3_ratio": rep, "n": len(rows)}  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true", help="1 audience x 1 seed x 3 nights x 24 posts, no tuning")
    p.add_argument("--tune", default="cat_people,stargazers", help="audiences the learning rates are tuned on")
    p.add_argument("--tune-seeds", default="100,101")
    p.add_argument("--report", default="realistic,foodies", help="audiences the table reports")
    p.add_argument("--seeds", default="0,1,2,3,4", help="report seeds")
    p.add_argument("--nights", type=int, default=8)
    p.add_argument("--posts-per-night", type=int, default=64)
    p.add_argument("--eval-samples", type=int, default=128)
    p.add_argument("--trainers", default="ours,lr0,kilroy,kilroy-lora,kto")
    p.add_argument("--lr", action="append", default=[], help="NAME=RATE: skip tuning for NAME")
    p.add_argument("--model", default="tiny")
    p.add_argument("--json")
    args = p.parse_args()
    if args.quick:
        args.report, args.seeds, args.nights, args.posts_per_night = args.report.split(",")[0], "0", 3, 24
        args.eval_samples, args.tune = 32, ""
    settings = load_settings(None, {"KILROY_MODEL": args.model, "KILROY_LOG_LEVEL": "error"})
    try:
        import datasets

        datasets.disable_progress_bars()
    except ImportError:
        pass
    setup_logging("ERROR")
    wanted = args.trainers.split(",")
    if "kto" in wanted:
        try:
            import trl  # noqa: F401
        except ImportError:
            print("KTO skipped: TRL is not installed (pip install -e '.[bench]')")
            wanted.remove("kto")
    audiences = builtin_audiences()
    fixed = {k: float(v) for k, v in (x.split("=", 1) for x in args.lr)}

    def run(name: str, lr: float | None, aud: str, seed: int) -> Run:
        r = asyncio.run(
            run_nights(
                make(name, settings, lr),
                settings,
                audiences[aud],
                nights=args.nights,
                posts=args.posts_per_night,
                seed=seed,
                eval_samples=args.eval_samples,
            )
        )
        print(
            f"  {r.trainer:<12}lr={r.lr:<8.0e}{r.audience:<12}seed {r.seed:<4} lift {r.lift:5.2f}  KL {r.kl:.3f}  "
            f"d2 {r.d2_ratio:4.0%}  repeat3 {r.repeat3_0:.2f}->{r.repeat3:.2f}  {r.seconds:.0f}s",
            flush=True,
        )
        return r

    chosen: dict[str, float | None] = {}
    tuning: list[Run] = []
    for name in wanted:
        if name in fixed or not args.tune or name not in GRIDS:
            chosen[name] = fixed.get(name)
            continue
        print(f"tuning {name} on {args.tune} x seeds {args.tune_seeds}")
        best: tuple[float, float] | None = None
        for lr in GRIDS[name]:
            rows = [run(name, lr, a, int(s)) for a in args.tune.split(",") for s in args.tune_seeds.split(",")]
            tuning += rows
            lift, d2 = statistics.fmean(r.lift for r in rows), statistics.fmean(r.d2_ratio for r in rows)
            if d2 >= 0.8 and (best is None or lift > best[0]):
                best = (lift, lr)
        chosen[name] = best[1] if best else min(GRIDS[name])
        print(f"  -> {name}: lr {chosen[name]:g}")
    print(f"reporting on {args.report} x seeds {args.seeds}")
    report: list[Run] = []
    for name in wanted:
        for aud in args.report.split(","):
            for seed in [int(x) for x in args.seeds.split(",")]:
                report.append(run(name, chosen[name], aud, seed))
    print()
    print(f"{'trainer':<12}{'lr':>8}  {'lift [95% CI]':<22}{'KL':>7}  {'distinct-2 [95% CI]':<20}{'repeat3':>8}  runs")
    table = {}
    for name in wanted:
        rows = [r for r in report if r.trainer == name]
        st = summarise(rows)
        table[name] = {**st, "lr": rows[0].lr}
        print(
            f"{name:<12}{rows[0].lr:>8.0e}  {st['lift']:.2f} [{st['lift_lo']:.2f}, {st['lift_hi']:.2f}]"
            f"{'':<7}{st['kl']:>7.3f}  {st['d2']:.0%} [{st['d2_lo']:.0%}, {st['d2_hi']:.0%}]"
            f"{'':<6}{st['repeat3_ratio']:>7.2f}x  {st['n']}"
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "chosen_lr": chosen,
                    "table": table,
                    "report": [asdict(r) for r in report],
                    "tuning": [asdict(r) for r in tuning],
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
