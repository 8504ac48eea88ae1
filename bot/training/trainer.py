"""One nightly fine-tune of the LoRA adapter, reading top to bottom, plus the candidate's evaluation.

Runs on a fresh model instance (never the serving one: bitsandbytes repacks 4-bit weights after inference, and a
swap would make peft's config stale). The reference for the KL anchor is the same model with the adapter
disabled, so no second copy of the base is held in memory.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.config.settings import GenerationSettings, ModelSettings, TrainingSettings
from bot.engine.generator import SamplingParams, sample_batch
from bot.engine.model import keep_4bit_weights_unpacked, load_base, lora_config
from bot.training.dataset import TrainingExample
from bot.training.objective import (
    IGNORE,
    distinct_n,
    kl_per_sequence,
    repeat3,
    repeated_ngram_positions,
    reward_weighted_loss,
    token_logprobs,
    unlikelihood_loss,
)
from bot.training.result import ArmMetrics, Evaluation, Progress
from bot.training.reward_model import RewardModel, shape_rewards

log = logging.getLogger(__name__)

OnProgress = Callable[[Progress], None]


@dataclass(frozen=True)
class Candidate:
    """A trained adapter written to `path` (a temp folder of the store), its evaluation (the gate's input) and its
    metrics (the evaluation's flat form plus the training's own figures: loss, train_kl, examples, ...)."""

    path: Path
    evaluation: Evaluation
    metrics: dict[str, float]


def _batch(examples: Sequence[TrainingExample], pad_id: int, device: Any) -> tuple[Any, Any, Any, Any]:
    """Right-padded (B, T) input ids, attention mask, labels (prompt and padding = IGNORE) and advantages (B,)."""
    import torch

    width = max(len(e.prompt_ids) + len(e.completion_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    for i, e in enumerate(examples):
        seq = list(e.prompt_ids) + list(e.completion_ids)
        ids[i, : len(seq)] = torch.tensor(seq)
        attn[i, : len(seq)] = 1
        # only the sampled completion is scored: training sees exactly the tokens members reacted to
        labels[i, len(e.prompt_ids) : len(seq)] = torch.tensor(e.completion_ids)
    adv = torch.tensor([e.reward for e in examples], dtype=torch.float32)
    return ids.to(device), attn.to(device), labels.to(device), adv.to(device)


def _repeat_mask(examples: Sequence[TrainingExample], width: int, device: Any) -> Any:
    """(B, width-1), aligned with token_logprobs: 1 where a completion token repeats one of its token trigrams."""
    import torch

    marked = torch.zeros((len(examples), max(1, width - 1)), dtype=torch.float32)
    for i, e in enumerate(examples):
        for j in repeated_ngram_positions(e.completion_ids):
            marked[i, len(e.prompt_ids) + j - 1] = 1.0
    return marked.to(device)


def _sequence_stats(model: Any, ids: Any, attn: Any, labels: Any) -> tuple[Any, Any, Any]:
    """(policy token logp, base token logp, mask), each (B, T-1); the base pass runs without gradients."""
    import torch

    logp, mask = token_logprobs(model(input_ids=ids, attention_mask=attn).logits, labels)
    with torch.no_grad(), model.disable_adapter():
        ref_logp, _ = token_logprobs(model(input_ids=ids, attention_mask=attn).logits, labels)
    return logp, ref_logp, mask


def train_adapter(
    examples: Sequence[TrainingExample],
    *,
    model_settings: ModelSettings,
    training: TrainingSettings,
    generation: GenerationSettings,
    data_dir: Path,
    parent_path: Path | None,
    out_dir: Path,
    on_progress: OnProgress | None = None,
    reward_model: RewardModel | None = None,
) -> Candidate:
    """Train a new adapter version from `parent_path` (or from scratch) on the examples; evaluate; save to out_dir.

    With a `reward_model`, `training.reward_samples` extra samples of the parent are drawn first and trained on
    with the model's (centred) estimate as their reward, and the gate metrics include each adapter's estimated
    engagement.
    """
    import torch
    from peft import PeftModel, get_peft_model, prepare_model_for_kbit_training

    emit = on_progress or (lambda _event: None)
    started = time.perf_counter()
    torch.manual_seed(training.seed)
    rng = random.Random(training.seed)

    loaded = load_base(model_settings, data_dir)
    base, tok = loaded.model, loaded.tokenizer
    if loaded.quantization != "none":
        # QLoRA's preparation: base weights frozen, every non-quantized weight (embedding, layer norms) in fp32.
        # No gradient checkpointing: a night's batches of short posts hold little activation memory
        base = prepare_model_for_kbit_training(base, use_gradient_checkpointing=False)
    if parent_path is not None:
        # continue from the serving adapter: each night is a small step from yesterday, anchored to the base
        model = PeftModel.from_pretrained(base, str(parent_path), adapter_name="default", is_trainable=True)
    else:
        model = get_peft_model(base, lora_config(model_settings))
    # eval mode during training too: GPT-2's dropout would make policy and reference log-probs disagree
    model.eval()
    keep_4bit_weights_unpacked(model)  # we sample before and after the steps: no in-place repacking for inference
    device = next(model.parameters()).device
    if reward_model is not None and training.reward_samples > 0:
        examples = list(examples) + _scored_samples(model, tok, loaded.context_size, generation, training, reward_model)
    # the compute dtype follows the device (bot/engine/model.py): bf16 autocast only where the GPU supports it; the
    # LoRA weights and AdamW's state stay fp32 either way (peft makes adapter weights fp32)
    bf16 = loaded.device == "cuda" and loaded.compute_dtype == "bfloat16"
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=training.learning_rate, weight_decay=0.0)
    # a batch-constant length normaliser keeps REINFORCE's per-post sum (the correct gradient) at a sane scale
    mean_len = max(1.0, sum(len(e.completion_ids) for e in examples) / max(1, len(examples)))
    order = list(examples)
    per_epoch = math.ceil(len(order) / training.batch_size)
    total = per_epoch * training.epochs
    step, losses, kls = 0, [], []
    for epoch in range(training.epochs):
        rng.shuffle(order)
        opt.zero_grad(set_to_none=True)
        for b in range(per_epoch):
            chunk = order[b * training.batch_size : (b + 1) * training.batch_size]
            ids, attn, labels, adv = _batch(chunk, tok.pad_token_id, device)
            with autocast:
                logp, ref_logp, mask = _sequence_stats(model, ids, attn, labels)
            seq_logp = logp.sum(-1) / mean_len  # (B,)
            kl = kl_per_sequence(logp, ref_logp, mask)  # (B,)
            loss = reward_weighted_loss(
                seq_logp,
                adv,
                kl,
                training.kl_beta,
                objective=training.objective,
                awr_temperature=training.awr_temperature,
            )
            if training.unlikelihood > 0:
                # whatever the reward, a post looping on its own words is never what to learn
                loss = loss + training.unlikelihood * unlikelihood_loss(logp, _repeat_mask(chunk, ids.shape[1], device))
            (loss / training.grad_accum).backward()
            step += 1
            if step % training.grad_accum == 0 or b == per_epoch - 1:
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                opt.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            kls.append(float(kl.detach().mean()))
            emit(Progress("progress", stage="train", step=step, of=total, epoch=epoch, loss=losses[-1]))

    emit(Progress("progress", stage="evaluate", step=total, of=total))
    evaluation = evaluate(
        model,
        tok,
        loaded.context_size,
        generation,
        training,
        parent_path=parent_path,
        seed=training.seed,
        reward_model=reward_model,
    )
    metrics = evaluation.as_metrics()
    metrics.update(
        loss=sum(losses) / len(losses) if losses else float("nan"),
        train_kl=sum(kls) / len(kls) if kls else 0.0,
        examples=float(len(examples)),
        mean_reward=sum(e.reward for e in examples) / max(1, len(examples)),
        seconds=time.perf_counter() - started,
    )
    model.save_pretrained(str(out_dir), selected_adapters=["default"])
    return Candidate(Path(out_dir), evaluation, metrics)


def evaluate(
    model: Any,
    tokenizer: Any,
    context_size: int,
    generation: GenerationSettings,
    training: TrainingSettings,
    *,
    parent_path: Path | None,
    seed: int,
    reward_model: RewardModel | None = None,
) -> Evaluation:
    """Fresh samples of the candidate, the base and the serving adapter, drawn with the same seed: the candidate's
    per-token KL to the base, and each one's distinct-2, repeat3, mean length and (with a reward model) estimated
    relative engagement."""
    import torch

    params = SamplingParams.from_settings(generation)

    def draw(adapter: str) -> list[Any]:
        # the same seed for every model, so the comparison is about the weights, not the dice
        torch.manual_seed(seed + 1)
        return sample_batch(
            model,
            tokenizer,
            prompt=generation.prompt,
            n=training.gate_samples,
            params=params,
            stop_at_newline=True,
            context_size=context_size,
            adapter=adapter,
        )

    samples = draw("candidate")
    examples = [TrainingExample(0, s.prompt_ids, s.completion_ids, 0.0) for s in samples if s.completion_ids]
    device = next(model.parameters()).device
    with torch.no_grad():
        ids, attn, labels, _ = _batch(examples, tokenizer.pad_token_id, device)
        logp, ref_logp, mask = _sequence_stats(model, ids, attn, labels)
        # on the candidate's own samples, E[logp - ref_logp] estimates KL(candidate || base) per token;
        # a sampled estimate can dip below zero when the two are nearly equal
        kl = max(0.0, float(((logp - ref_logp) * mask).sum() / mask.sum().clamp(min=1)))
    with model.disable_adapter():
        base = draw("base")
    serving = base
    if parent_path is not None:
        model.load_adapter(str(parent_path), adapter_name="serving")
        model.set_adapter("serving")
        serving = draw("serving")
        model.set_adapter("default")
        model.delete_adapter("serving")

    def arm(drawn: list[Any]) -> ArmMetrics:
        texts = [s.text for s in drawn]
        engagement = None
        if reward_model is not None:
            engagement = sum(reward_model.relative(texts)) / max(1, len(texts))
        mean_tokens = sum(s.tokens for s in drawn) / max(1, len(drawn))
        return ArmMetrics(distinct_n(texts), repeat3(texts), mean_tokens, engagement)

    return Evaluation(kl, candidate=arm(samples), serving=arm(serving), base=arm(base))


def _scored_samples(
    model: Any,
    tokenizer: Any,
    context_size: int,
    generation: GenerationSettings,
    training: TrainingSettings,
    reward_model: RewardModel,
) -> list[TrainingExample]:
    """Fresh samples of the parent (the model before any step), rewarded by the reward model, centred."""
    import torch

    torch.manual_seed(training.seed + 2)
    samples = [
        s
        for s in sample_batch(
            model,
            tokenizer,
            prompt=generation.prompt,
            n=training.reward_samples,
            params=SamplingParams.from_settings(generation),
            stop_at_newline=True,
            context_size=context_size,
            adapter="parent",
        )
        if s.completion_ids
    ]
    rewards = shape_rewards(
        reward_model.relative([s.text for s in samples]),
        [float(len(s.completion_ids)) for s in samples],
        [repeat3([s.text]) for s in samples],
        length_neutral=training.length_neutral,
        repeat_penalty=training.repeat_penalty,
    )
    return [TrainingExample(-1, s.prompt_ids, s.completion_ids, r) for s, r in zip(samples, rewards, strict=True)]


def kl_to_base(model: Any, tokenizer: Any, samples: Sequence[Any], *, chunk: int = 64) -> float:
    """Mean per-token KL(adapter || base) on the adapter's own samples: E[logp - ref_logp] over all their tokens.

    `model` is a peft model with the adapter to measure active, or None for the base itself (KL 0). A sampled
    estimate can dip below zero when the two are nearly equal; it is floored at 0.
    """
    import torch

    if model is None:
        return 0.0
    examples = [TrainingExample(0, s.prompt_ids, s.completion_ids, 0.0) for s in samples if s.completion_ids]
    if not examples:
        return 0.0
    device = next(model.parameters()).device
    total, tokens = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(examples), chunk):
            ids, attn, labels, _ = _batch(examples[i : i + chunk], tokenizer.pad_token_id, device)
            logp, ref_logp, mask = _sequence_stats(model, ids, attn, labels)
            total += float(((logp - ref_logp) * mask).sum())
            tokens += int(mask.sum())
    return max(0.0, total / max(1, tokens))
