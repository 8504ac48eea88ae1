"""Stateless batch sampling: one `generate` over rows that may differ in prompt and in adapter.

A row is one prompt to complete once. Rows of different lengths are left-padded to the longest one (GPT-2 reads the
attention mask, so a padded row samples what it would alone); rows of different adapters go through peft's
mixed-adapter batch (`generate(..., adapter_names=[...])`, "__base__" for the base model), in which each LoRA layer
runs the base layer once for the whole batch and each adapter's low-rank product on its own rows. Every row keeps
the exact ids it was sampled as, and the no-repeat guard reads each row's completion on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from bot.config.settings import SamplingParams
from bot.engine.norepeat import NoRepeatedWords

PEFT_BASE = "__base__"  # peft's name for "no adapter" in a mixed batch


@dataclass(frozen=True)
class Sample:
    """One generated text with the exact ids it was sampled as."""

    text: str
    prompt: str
    prompt_ids: tuple[int, ...]
    completion_ids: tuple[int, ...]
    adapter: str
    params: dict[str, Any]

    @property
    def tokens(self) -> int:
        """Number of generated tokens."""
        return len(self.completion_ids)


def stop_token_ids(tokenizer: Any) -> list[int]:
    """EOS plus every token that contains a newline (byte-level BPE writes '\\n' as 'Ċ')."""
    ids = {tokenizer.eos_token_id}
    cached = getattr(tokenizer, "_kilroy_stop_ids", None)
    if cached is not None:
        return cached
    for token, idx in tokenizer.get_vocab().items():
        if "Ċ" in token or "\n" in token:
            ids.add(idx)
    out = sorted(i for i in ids if i is not None)
    tokenizer._kilroy_stop_ids = out
    return out


def prompt_ids_for(tokenizer: Any, prompt: str, budget: int) -> list[int]:
    """Token ids of a prompt, starting with BOS, keeping the last `budget` tokens."""
    ids = [tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id]
    if prompt:
        ids += tokenizer(prompt, add_special_tokens=False)["input_ids"]
    return ids[-budget:]


@dataclass(frozen=True)
class Row:
    """One row of a batch: its prompt (text and ids), the adapter reference recorded on its sample, and the name
    peft knows that adapter by in a mixed batch (PEFT_BASE for the base model; None outside a mixed batch)."""

    prompt: str
    ids: tuple[int, ...]
    adapter: str
    peft_adapter: str | None = None


def sample_rows(
    model: Any,
    tokenizer: Any,
    rows: Sequence[Row],
    *,
    params: SamplingParams,
    stop_at_newline: bool,
) -> list[Sample]:
    """Sample one completion per row in one `generate` call (synchronous; call from the model thread).

    With `peft_adapter` set on the rows, `model` must be a PeftModel holding those adapters: each row is written
    by its own. Prompts must already fit the context (the caller trims them to context - max_new_tokens).
    """
    import torch
    from transformers import LogitsProcessorList

    width = max(len(r.ids) for r in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = next(model.parameters()).device
    # (B, width), left-padded: every row's next token is at the same position, so the completions line up
    input_ids = torch.tensor([[pad] * (width - len(r.ids)) + list(r.ids) for r in rows], device=device)
    attention = torch.tensor([[0] * (width - len(r.ids)) + [1] * len(r.ids) for r in rows], device=device)
    stops = stop_token_ids(tokenizer) if stop_at_newline else [tokenizer.eos_token_id]
    guards = [NoRepeatedWords(tokenizer, params.no_repeat_ngram, width)] if params.no_repeat_ngram > 0 else []
    extra: dict[str, Any] = {}
    if any(r.peft_adapter is not None for r in rows):
        extra["adapter_names"] = [r.peft_adapter or PEFT_BASE for r in rows]
    with torch.inference_mode():
        out = model.generate(
            input_ids=input_ids,
            attention_mask=attention,
            do_sample=True,
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k,
            max_new_tokens=params.max_new_tokens,
            repetition_penalty=params.repetition_penalty,
            logits_processor=LogitsProcessorList(guards),
            eos_token_id=stops,
            pad_token_id=tokenizer.pad_token_id,
            **extra,
        )
    stop_set = set(stops)
    samples = []
    for r, generated in zip(rows, out[:, width:].tolist(), strict=True):
        completion: list[int] = []
        for tok in generated:
            completion.append(tok)
            if tok in stop_set:  # keep the stop token: training teaches where a post ends
                break
        body = completion[:-1] if completion and completion[-1] in stop_set else completion
        text = tokenizer.decode(body, skip_special_tokens=True).strip()
        samples.append(Sample(text, r.prompt, r.ids, tuple(completion), r.adapter, asdict(params)))
    return samples


def sample_batch(
    model: Any,
    tokenizer: Any,
    *,
    prompt: str,
    n: int,
    params: SamplingParams,
    stop_at_newline: bool,
    context_size: int,
    adapter: str,
    prompt_ids: Sequence[int] | None = None,
) -> list[Sample]:
    """Sample `n` completions of one prompt in one batch with whatever adapter `model` has active."""
    budget = max(1, context_size - params.max_new_tokens)
    ids = list(prompt_ids)[-budget:] if prompt_ids is not None else prompt_ids_for(tokenizer, prompt, budget)
    row = Row(prompt, tuple(ids), adapter)
    return sample_rows(model, tokenizer, [row] * n, params=params, stop_at_newline=stop_at_newline)
