"""Build, once, a small GPT-2 and a byte-level BPE tokenizer trained on a generated corpus. No hub access.

The result is saved with `save_pretrained` and reloaded through the same `from_pretrained` path as `gpt2`, so
tests and the offline demo exercise the real loading code.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from bot.engine.corpus import make_corpus

log = logging.getLogger(__name__)

EOS = "<|endoftext|>"


@dataclass(frozen=True)
class TinySpec:
    """Shape and pretraining budget of the tiny model."""

    vocab_size: int = 2000
    n_layer: int = 4
    n_embd: int = 128
    n_head: int = 4
    n_positions: int = 256
    corpus_posts: int = 20000
    block: int = 64
    batch: int = 32
    steps: int = 500
    lr: float = 3e-3
    seed: int = 0


PRESETS = {
    "default": TinySpec(),
    # for the test suite: smaller and faster to build, still fluent enough to carry topics
    "test": TinySpec(n_layer=2, n_embd=64, n_head=2, corpus_posts=8000, steps=400, vocab_size=1200),
}


def tiny_path(data_dir: Path, preset: str = "default") -> Path:
    """Where the tiny model of a preset is cached."""
    return Path(data_dir) / ("tiny-gpt2" if preset == "default" else f"tiny-gpt2-{preset}")


def ensure_tiny(data_dir: Path, preset: str = "default", on_progress: Callable[[int, int], None] | None = None) -> Path:
    """Return the cached tiny model's folder, building it first if missing."""
    path = tiny_path(data_dir, preset)
    if (path / "config.json").exists() and (path / "tokenizer.json").exists():
        return path
    log.info("building the offline tiny model (%s preset) once at %s; this takes a minute or two", preset, path)

    def report(step: int, total: int) -> None:
        if step == total or step % 100 == 1:
            log.info("pretraining the tiny model: step %d of %d", step, total)

    build_tiny(path, PRESETS[preset], on_progress=on_progress or report)
    return path


def build_tiny(path: Path, spec: TinySpec, on_progress: Callable[[int, int], None] | None = None) -> Path:
    """Generate a corpus, train a tokenizer and pretrain a small GPT-2 on it; save atomically at `path`."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    started = time.perf_counter()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{path.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        docs = make_corpus(spec.corpus_posts, seed=spec.seed)
        (tmp / "corpus.txt").write_text("".join(EOS + d for d in docs), encoding="utf-8")

        bpe = ByteLevelBPETokenizer()
        bpe.train_from_iterator(docs, vocab_size=spec.vocab_size, min_frequency=2, special_tokens=[EOS])
        tokenizer = PreTrainedTokenizerFast(
            tokenizer_object=bpe._tokenizer, bos_token=EOS, eos_token=EOS, unk_token=EOS
        )
        tokenizer.pad_token = EOS
        tokenizer.model_max_length = spec.n_positions

        # one stream of "<eos>doc<eos>doc..." cut into fixed blocks: plain LM pretraining
        eos_id = tokenizer.eos_token_id
        stream: list[int] = []
        for d in docs:
            stream.append(eos_id)
            stream.extend(tokenizer(d, add_special_tokens=False)["input_ids"])
        data = torch.tensor(stream, dtype=torch.long)

        torch.manual_seed(spec.seed)
        config = GPT2Config(
            vocab_size=len(tokenizer),
            n_positions=spec.n_positions,
            n_embd=spec.n_embd,
            n_layer=spec.n_layer,
            n_head=spec.n_head,
            bos_token_id=eos_id,
            eos_token_id=eos_id,
            pad_token_id=eos_id,
        )
        model = GPT2LMHeadModel(config)
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=0.01)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=spec.lr, total_steps=spec.steps, pct_start=0.1)
        gen = torch.Generator().manual_seed(spec.seed)
        loss_value = float("nan")
        for step in range(spec.steps):
            starts = torch.randint(0, len(data) - spec.block - 1, (spec.batch,), generator=gen)
            batch = torch.stack([data[s : s + spec.block] for s in starts])  # (B, T)
            loss = model(input_ids=batch, labels=batch).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            loss_value = loss.item()
            if on_progress and (step % 50 == 0 or step == spec.steps - 1):
                on_progress(step + 1, spec.steps)
        model.eval()
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "kilroy_tiny.json").write_text(
            json.dumps({"spec": asdict(spec), "final_loss": loss_value, "seconds": time.perf_counter() - started}),
            encoding="utf-8",
        )
        if path.exists():  # another process built it meanwhile: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
            return path
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("built tiny model at %s in %.0fs (final loss %.2f)", path, time.perf_counter() - started, loss_value)
    return path
