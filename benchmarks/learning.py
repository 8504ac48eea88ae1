"""Learning benchmark: our nightly trainer against Kilroy's published REINFORCE recipe and TRL's KTO, side by side.

    python benchmarks/learning.py            # full: 2 audiences x 2 seeds x 8 nights x 64 posts per trainer
    python benchmarks/learning.py --quick    # a few minutes: 1 audience x 1 seed x 3 nights x 24 posts

Every trainer gets the same simulated community (the same `react` through the real Storage, the same scoring),
posts per night, nights and seeds. Columns: lift (last night's mean score / night 0's), distinct-2 of the last
night over night 0's, KL of the final model to the base on fresh samples (nats per token), wall time.
KTO needs the optional `bench` extra (`pip install -e '.[bench]'`); without TRL it is skipped and says so.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bot.adapters import BASE, AdapterStore
from bot.config import Settings, load_settings
from bot.engine.generator import Generator, Sample, SamplingParams, sample_batch
from bot.engine.model import load_base, lora_config
from bot.logs import setup_logging
from bot.scoring import formula_from_settings, normalise_rewards, score_post
from bot.serving import AdapterService
from bot.simulation import DAY, EPOCH, AudienceSpec, builtin_audiences, publish_night
from bot.storage import PostRecord, Storage
from bot.training.objective import distinct_n, token_logprobs
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


# --- the three trainers behind one small interface -------------------------------------------------------------------


class Ours:
    """The nightly trainer as it ships: run_training (score, normalise, REINFORCE + KL, gate) and a hot swap."""

    name = "ours"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def setup(self, storage: Storage, workdir: Path) -> None:
        self.storage, self.store = storage, AdapterStore(self.settings.adapters_dir)
        self.generator = Generator(
            load_base(self.settings.model, self.settings.data_dir, device="cpu"),
            SamplingParams.from_settings(self.settings.generation),
        )
        self.service = AdapterService(self.store, self.generator)

    async def generate(self, n: int, seed: int) -> list[Sample]:
        return await self.generator.generate(n, seed=seed)

    async def train(self, night_records: list[PostRecord], now: float) -> None:
        from bot.training.nightly import run_training

        result = await run_training(self.settings, self.storage, self.store, now=now, reason="bench")
        if result.promoted and result.adapter:
            await self.service.use(result.adapter)

    def final_model(self) -> Any:
        from peft import PeftModel

        base = load_base(self.settings.model, self.settings.data_dir, device="cpu").model
        name = self.store.current()
        return base if name == BASE else PeftModel.from_pretrained(base, str(self.store.path(name)))

    async def close(self) -> None:
        await self.generator.close()


class KilroyRecipe:
    """Kilroy's published recipe: REINFORCE, reward = z-score over the last 1,000 scores (first reward 0),
    loss = -(sum of token log-probs) x reward averaged over the batch, one Adam step per night at lr 1e-5,
    no clipping, no KL, full fine-tuning with the lower half of the transformer blocks frozen."""

    name = "kilroy"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.window: list[float] = []

    async def setup(self, storage: Storage, workdir: Path) -> None:
        self.loaded = load_base(self.settings.model, self.settings.data_dir, device="cpu")
        self.model = self.loaded.model
        blocks = self.model.transformer.h
        for block in blocks[: len(blocks) // 2]:
            for p in block.parameters():
                p.requires_grad_(False)
        self.opt = torch.optim.Adam([p for p in self.model.parameters() if p.requires_grad], lr=1e-5)
        self.formula = formula_from_settings(self.settings.scoring)

    async def generate(self, n: int, seed: int) -> list[Sample]:
        return _sample(self.model, self.loaded, self.settings, n, seed, self.name)

    def _reward(self, score: float) -> float:
        window = self.window[-1000:]
        self.window.append(score)
        if not window:
            return 0.0
        mean, std = statistics.mean(window), statistics.pstdev(window)
        return 0.0 if std == 0 else (score - mean) / std

    async def train(self, night_records: list[PostRecord], now: float) -> None:
        from bot.dataset import TrainingExample

        examples = [
            TrainingExample(
                r.post.id, r.post.prompt_ids, r.post.completion_ids, self._reward(score_post(r, self.formula))
            )
            for r in night_records
            if r.post.completion_ids
        ]
        ids, attn, labels, reward = _batch(examples, self.loaded.tokenizer.pad_token_id, "cpu")
        self.model.train()
        logp, _ = token_logprobs(self.model(input_ids=ids, attention_mask=attn).logits, labels)
        loss = -(logp.sum(-1) * reward).mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        self.model.eval()

    def final_model(self) -> Any:
        return self.model

    async def close(self) -> None:
        return None


KTO_LR = 1e-4  # set by --kto-lr; our LoRA rate (3e-3) makes KTO collapse within a few nights


class KTO:
    """TRL's KTOTrainer with a LoRA: top third of the night's normalised scores desirable, bottom third undesirable,
    middle dropped; the base model (adapter disabled) as the fixed reference; CPU-safe settings."""

    name = "kto"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.adapter_dir: Path | None = None

    async def setup(self, storage: Storage, workdir: Path) -> None:
        self.workdir = workdir
        self.formula = formula_from_settings(self.settings.scoring)
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
            num_train_epochs=2,
            learning_rate=KTO_LR,
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

    def final_model(self) -> Any:
        return self.model

    async def close(self) -> None:
        return None


# --- the shared nights loop ------------------------------------------------------------------------------------------


@dataclass
class Run:
    trainer: str
    audience: str
    seed: int
    lift: float
    d2_ratio: float
    kl: float
    seconds: float


def kl_to_base(policy: Any, settings: Settings, seed: int, n: int = 32) -> float:
    """Per-token KL(policy || base) on fresh policy samples."""
    base = load_base(settings.model, settings.data_dir, device="cpu")
    samples = _sample(policy, base, settings, n, seed + 99, "eval")
    from bot.dataset import TrainingExample

    examples = [TrainingExample(0, s.prompt_ids, s.completion_ids, 0.0) for s in samples if s.completion_ids]
    ids, attn, labels, _ = _batch(examples, base.tokenizer.pad_token_id, "cpu")
    with torch.no_grad():
        logp, mask = token_logprobs(policy(input_ids=ids, attention_mask=attn).logits, labels)
        ref, _ = token_logprobs(base.model(input_ids=ids, attention_mask=attn).logits, labels)
    return float(((logp - ref) * mask).sum() / mask.sum())


async def run_nights(
    trainer: Any, settings: Settings, audience: AudienceSpec, *, nights: int, posts: int, seed: int
) -> Run:
    started = time.perf_counter()
    formula = formula_from_settings(settings.scoring)
    rng = random.Random(seed)
    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        s = settings.replace(db_path=work / "k.db", adapters_dir=work / "adapters")
        trainer.settings = s.replace(training=_seeded(s, seed))
        means, d2 = [], []
        message_id = 1
        async with Storage.open(s.db_path) as storage:
            await trainer.setup(storage, work)
            try:
                for night in range(nights):
                    start = EPOCH + night * DAY
                    samples = await trainer.generate(posts, seed * 7919 + night)
                    records = await publish_night(storage, audience, samples, start=start, first_id=message_id, rng=rng)
                    message_id += len(samples)
                    means.append(sum(score_post(r, formula) for r in records) / len(records))
                    d2.append(distinct_n([smp.text for smp in samples]))
                    if night < nights - 1:
                        await trainer.train(records, start + DAY - 1)
                kl = kl_to_base(trainer.final_model(), s, seed)
            finally:
                await trainer.close()
    lift = means[-1] / means[0] if means[0] > 0 else math.inf
    return Run(
        trainer.name, audience.name, seed, lift, d2[-1] / d2[0] if d2[0] else 0.0, kl, time.perf_counter() - started
    )


def _seeded(settings: Settings, seed: int) -> Any:
    import dataclasses

    return dataclasses.replace(settings.training, seed=seed)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true", help="1 audience x 1 seed x 3 nights x 24 posts")
    p.add_argument("--audiences", default="cat_people,dragon_fans")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--nights", type=int, default=8)
    p.add_argument("--posts-per-night", type=int, default=64)
    p.add_argument("--trainers", default="ours,kilroy,kto")
    p.add_argument("--model", default="tiny")
    p.add_argument("--kto-lr", type=float, default=KTO_LR, help="KTO learning rate (LoRA)")
    p.add_argument("--json")
    args = p.parse_args()
    globals()["KTO_LR"] = args.kto_lr
    if args.quick:
        args.audiences, args.seeds, args.nights, args.posts_per_night = args.audiences.split(",")[0], "0", 3, 24
    settings = load_settings(None, {"KILROY_MODEL": args.model, "KILROY_LOG_LEVEL": "error"})
    try:
        import datasets

        datasets.disable_progress_bars()
    except ImportError:
        pass
    setup_logging("ERROR")
    trainers = {"ours": Ours, "kilroy": KilroyRecipe, "kto": KTO}
    wanted = args.trainers.split(",")
    if "kto" in wanted:
        try:
            import trl  # noqa: F401
        except ImportError:
            print("KTO skipped: TRL is not installed (pip install -e '.[bench]')")
            wanted.remove("kto")
    audiences = builtin_audiences()
    runs: list[Run] = []
    print(f"{'trainer':<8}{'audience':<13}{'seed':>5}{'lift':>8}{'distinct-2':>12}{'KL':>8}{'seconds':>9}")
    for name in wanted:
        for aud in args.audiences.split(","):
            for seed in [int(x) for x in args.seeds.split(",")]:
                r = asyncio.run(
                    run_nights(
                        trainers[name](settings),
                        settings,
                        audiences[aud],
                        nights=args.nights,
                        posts=args.posts_per_night,
                        seed=seed,
                    )
                )
                runs.append(r)
                print(
                    f"{r.trainer:<8}{r.audience:<13}{r.seed:>5}{r.lift:>8.2f}{r.d2_ratio:>11.0%}{r.kl:>8.3f}"
                    f"{r.seconds:>9.0f}",
                    flush=True,
                )
    print()
    mean_lift = {}
    for name in wanted:
        rs = [r for r in runs if r.trainer == name]
        mean_lift[name] = statistics.mean(r.lift for r in rs)
        print(
            f"{name:<8} mean lift {mean_lift[name]:.2f}  mean distinct-2 {statistics.mean(r.d2_ratio for r in rs):.0%}"
            f"  mean KL {statistics.mean(r.kl for r in rs):.3f}  time {sum(r.seconds for r in rs):.0f}s"
        )
    for other in ("kilroy", "kto"):
        if "ours" in mean_lift and other in mean_lift:
            print(f"ours / {other} mean lift: {mean_lift['ours'] / mean_lift[other]:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps([r.__dict__ for r in runs], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
