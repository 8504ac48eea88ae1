"""The only object that touches the live model: generation and adapter swaps, on one worker thread.

One thread on purpose: it serialises generations and swaps, so a swap (which rewrites weights in place) can never
land in the middle of a generation, and the event loop never runs torch.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from bot.config.settings import ModelSettings, SamplingParams
from bot.domain.records import BASE
from bot.engine.adapter_check import AdapterShapeError, check_adapter_shape
from bot.engine.model import LORA_TARGETS, LoadedModel
from bot.engine.norepeat import NoRepeatedWords
from bot.engine.threads import set_torch_threads

log = logging.getLogger(__name__)

__all__ = ["AdapterLoadError", "Generator", "Sample", "SamplingParams", "sample_batch"]
T = TypeVar("T")


class AdapterLoadError(Exception):
    """An adapter could not be loaded; the serving adapter is unchanged."""


class GeneratorBusy(Exception):
    """More generations are waiting than KILROY_MAX_QUEUE allows; the caller should try again shortly."""

    def __init__(self) -> None:
        super().__init__("Kilroy is busy writing for others: try again shortly.")


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
    """Sample `n` completions of one prompt in one batch (synchronous; call from a worker thread)."""
    import torch
    from transformers import LogitsProcessorList

    budget = max(1, context_size - params.max_new_tokens)
    ids = list(prompt_ids)[-budget:] if prompt_ids is not None else prompt_ids_for(tokenizer, prompt, budget)
    device = next(model.parameters()).device
    input_ids = torch.tensor([ids] * n, device=device)  # (n, P): same prompt, no padding needed
    stops = stop_token_ids(tokenizer) if stop_at_newline else [tokenizer.eos_token_id]
    guards = [NoRepeatedWords(tokenizer, params.no_repeat_ngram, len(ids))] if params.no_repeat_ngram > 0 else []
    with torch.inference_mode():
        out = model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            do_sample=True,
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k,
            max_new_tokens=params.max_new_tokens,
            repetition_penalty=params.repetition_penalty,
            logits_processor=LogitsProcessorList(guards),
            eos_token_id=stops,
            pad_token_id=tokenizer.pad_token_id,
        )
    stop_set = set(stops)
    samples = []
    for row in out[:, len(ids) :].tolist():
        completion: list[int] = []
        for tok in row:
            completion.append(tok)
            if tok in stop_set:  # keep the stop token: training teaches where a post ends
                break
        body = completion[:-1] if completion and completion[-1] in stop_set else completion
        text = tokenizer.decode(body, skip_special_tokens=True).strip()
        samples.append(Sample(text, prompt, tuple(ids), tuple(completion), adapter, asdict(params)))
    return samples


def peft_name(name: str) -> str:
    """The name an adapter gets inside peft: prefixed and escaped, so it never clashes with a module attribute
    ('keys', 'base_model', 'default' ...) and never holds a '.' (which torch module names forbid). Injective."""
    return "kilroy_" + "".join(c if c.isalnum() else f"_{ord(c):02x}" for c in name)


def check_adapter_weights(tensors: dict[str, Any], expected: set[str], name: str) -> None:
    """Refuse weights with NaN/inf, or whose keys are not exactly the model's LoRA parameters for this adapter."""
    import torch

    bad = [k for k, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise AdapterLoadError(f"adapter {name!r} has NaN or infinite weights ({len(bad)} tensor(s), e.g. {bad[0]})")
    keys = set(tensors)
    unexpected, missing = keys - expected, expected - keys
    if unexpected or missing:
        example = sorted(unexpected or missing)[0]
        raise AdapterLoadError(
            f"adapter {name!r} does not match this model's LoRA modules: {len(unexpected)} unexpected and "
            f"{len(missing)} missing tensor(s), e.g. {example}"
        )


class Generator:
    """Generates text with the base model plus the active LoRA adapter; swaps adapters without a restart."""

    def __init__(
        self,
        loaded: LoadedModel,
        params: SamplingParams,
        *,
        keep_loaded: int = 2,
        max_queue: int | None = None,
        threads: int | None = None,
        lora_rank: int = ModelSettings.lora_rank,
        lora_targets: Sequence[str] = tuple(LORA_TARGETS),
    ) -> None:
        self.loaded = loaded
        # the configured LoRA shape (KILROY_LORA_RANK, the target modules): an adapter is checked against it before
        # anything is allocated (bot/engine/adapter_check.py)
        self.lora_rank, self.lora_targets = lora_rank, tuple(lora_targets)
        self.params = params
        self.keep_loaded = keep_loaded
        self.max_queue = max_queue  # generations waiting or running at once; None = unbounded
        self._pending = 0
        # `threads`: torch intra-op threads while a training competes for the cores (bot/engine/threads.py); set when
        # the model thread starts. With `contended` wired (a training running?), each generation uses `threads`
        # only while it says so, and torch's own count (every core) otherwise.
        self.threads = threads
        self.contended: Callable[[], bool] | None = None
        self._own_threads: int | None = None  # torch's own count (every core, or OMP_NUM_THREADS), before ours
        if threads is not None:
            import torch

            self._own_threads = torch.get_num_threads()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kilroy-model", initializer=self._start)
        self._peft: Any = None  # PeftModel, created on the first adapter load
        self._active = BASE
        self._resident: list[str] = []  # adapters loaded in memory, least recently used first
        self._pinned: set[str] = set()  # resident adapters eviction must keep (an A/B trial's arms)
        self.observers: list[Callable[[float, list[Sample]], None]] = []  # called with (seconds, samples) per call

    @property
    def active(self) -> str:
        """The adapter serving right now (`base` for none)."""
        return self._active

    @property
    def context_size(self) -> int:
        """The model's context length in tokens."""
        return self.loaded.context_size

    def _start(self) -> None:
        """The model thread's first act: take our share (until a generation says no training runs)."""
        set_torch_threads(self.threads)

    def _threads_now(self) -> int | None:
        """On the loop, per generation: our share while a training runs, every core otherwise (None: leave as is)."""
        if self.threads is None or self.contended is None:
            return None
        try:
            contended = self.contended()
        except Exception:  # cannot tell: assume a training runs (the safe side for the training and for us)
            contended = True
        return self.threads if contended else self._own_threads

    def _with_threads(self, threads: int | None, fn: Callable[..., T], *args: Any) -> T:
        """On the model thread: set torch's threads (when they change), then run `fn`."""
        if threads is not None:
            import torch

            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)
        return fn(*args)

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()  # lines logged on the model thread carry the caller's ids (bot/logs.py)
        return await loop.run_in_executor(self._executor, partial(ctx.run, fn, *args, **kwargs))

    def count_tokens(self, text: str) -> int:
        """Tokens in `text` (cheap, thread-safe: the fast tokenizer is Rust)."""
        return len(self.loaded.tokenizer(text, add_special_tokens=False)["input_ids"])

    @property
    def pending(self) -> int:
        """Generate calls queued or running on the model thread (the queue depth /metrics shows)."""
        return self._pending

    @property
    def busy(self) -> bool:
        """True when a new generation would be refused (the queue is at KILROY_MAX_QUEUE)."""
        return self.max_queue is not None and self._pending >= self.max_queue

    async def generate(
        self,
        n: int = 1,
        *,
        prompt: str = "",
        stop_at_newline: bool = True,
        prompt_ids: Sequence[int] | None = None,
        seed: int | None = None,
        adapter: str | None = None,
        **overrides: Any,
    ) -> list[Sample]:
        """Sample `n` texts off the event loop; each carries the adapter that wrote it.

        `adapter` names a resident adapter to write with for this call only (an A/B trial's arm); None uses the
        serving one. The choice travels with the call into the model thread, so concurrent calls never mix arms.
        Raises GeneratorBusy at once when the queue is full. The check and the count happen before the first await,
        so simultaneous callers cannot all slip past the bound.
        """
        if self.busy:
            raise GeneratorBusy()
        params = replace(self.params, **overrides) if overrides else self.params
        started = time.perf_counter()
        self._pending += 1
        try:
            samples = await self._run(
                self._with_threads,
                self._threads_now(),
                self._generate_sync,
                n,
                prompt,
                params,
                stop_at_newline,
                prompt_ids,
                seed,
                adapter,
            )
        finally:
            self._pending -= 1
        for observe in self.observers:
            try:
                observe(time.perf_counter() - started, samples)
            except Exception:  # an observer (metrics) must never cost a post
                log.warning("generation observer failed", exc_info=True)
        return samples

    def _generate_sync(
        self,
        n: int,
        prompt: str,
        params: SamplingParams,
        stop_at_newline: bool,
        prompt_ids: Sequence[int] | None,
        seed: int | None,
        adapter: str | None = None,
    ) -> list[Sample]:
        import torch

        name = self._active if adapter is None else adapter
        if not self.is_resident(name):
            raise AdapterLoadError(f"adapter {name!r} is not loaded; load it before generating with it")
        if seed is not None:
            # a seeded sample (a health check, a reproducible `generate --seed`) must not reset the RNG that later
            # unseeded posts draw from: fork it, seed the fork, and restore it afterwards
            devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(seed)
                return self._generate_unseeded(n, prompt, params, stop_at_newline, prompt_ids, name)
        return self._generate_unseeded(n, prompt, params, stop_at_newline, prompt_ids, name)

    def _generate_unseeded(
        self,
        n: int,
        prompt: str,
        params: SamplingParams,
        stop_at_newline: bool,
        prompt_ids: Sequence[int] | None,
        name: str,
    ) -> list[Sample]:
        model = self._peft if self._peft is not None else self.loaded.model
        kwargs = dict(
            prompt=prompt,
            n=n,
            params=params,
            stop_at_newline=stop_at_newline,
            context_size=self.context_size,
            adapter=name,
            prompt_ids=prompt_ids,
        )
        if self._peft is not None and name == BASE:
            with self._peft.disable_adapter():
                return sample_batch(model, self.loaded.tokenizer, **kwargs)
        if name == self._active or self._peft is None:
            return sample_batch(model, self.loaded.tokenizer, **kwargs)
        # another resident adapter for this call only (~3 ms each way); this thread runs nothing else meanwhile
        self._peft.set_adapter(peft_name(name))
        try:
            return sample_batch(model, self.loaded.tokenizer, **kwargs)
        finally:
            if self._active != BASE:
                self._peft.set_adapter(peft_name(self._active))

    async def use_adapter(self, name: str, path: Path | None) -> float:
        """Switch the live model to `name` (loading it from `path` if not resident); return seconds taken.

        All or nothing: if loading fails, the serving adapter is unchanged and AdapterLoadError is raised.
        """
        return await self._run(self._use_sync, name, path)

    def _use_sync(self, name: str, path: Path | None) -> float:
        started = time.perf_counter()
        if name == BASE:
            self._active = BASE
            return time.perf_counter() - started
        if name not in self._resident:
            if path is None:
                raise AdapterLoadError(f"adapter {name!r} is not loaded and no path was given")
            self._load_sync(name, path)
        self._peft.set_adapter(peft_name(name))
        self._active = name
        self._resident.remove(name)
        self._resident.append(name)  # most recently used last: eviction takes the least recently used
        self._evict_sync()
        took = time.perf_counter() - started
        log.info("serving adapter %s (switch took %.0f ms)", name, took * 1000)
        return took

    async def preload(self, name: str, path: Path, *, pin: bool = True) -> None:
        """Make `name` resident without serving it (an A/B trial's candidate); `pin` keeps it from eviction."""
        await self._run(self._preload_sync, name, path, pin)

    def _preload_sync(self, name: str, path: Path, pin: bool) -> None:
        if name != BASE and name not in self._resident:
            self._load_sync(name, path)
            if self._active != BASE:
                self._peft.set_adapter(peft_name(self._active))  # keep serving what served
        if pin:
            self._pinned.add(name)

    def pin(self, names: set[str]) -> None:
        """Exactly these resident adapters are kept from eviction (a trial's arms); others may be evicted."""
        self._pinned = set(names)

    def _load_sync(self, name: str, path: Path) -> None:
        from peft import PeftModel, get_peft_model_state_dict
        from safetensors.torch import load_file

        from bot.domain.records import WEIGHTS

        inner = peft_name(name)
        try:  # before any allocation: peft would build layers of whatever rank the folder's own config says
            check_adapter_shape(Path(path), self.loaded.model, max_rank=self.lora_rank, targets=self.lora_targets)
        except AdapterShapeError as exc:
            raise AdapterLoadError(f"adapter {name!r} is refused: {exc}") from exc
        try:
            tensors = load_file(str(Path(path) / WEIGHTS))
            if self._peft is None:
                self._peft = PeftModel.from_pretrained(self.loaded.model, str(path), adapter_name=inner)
                self._peft.eval()
            else:
                self._peft.load_adapter(str(path), adapter_name=inner)
            # peft loads whatever keys match and silently keeps fresh (zero) LoRA weights for the rest: a file whose
            # keys match nothing would serve the base model under the adapter's name. Compare exactly.
            expected = set(get_peft_model_state_dict(self._peft, adapter_name=inner))
            check_adapter_weights(tensors, expected, name)
        except Exception as exc:
            # a half-registered adapter must not linger; the active one is untouched
            if self._peft is not None and inner in getattr(self._peft, "peft_config", {}):
                try:
                    self._peft.delete_adapter(inner)
                except Exception:
                    log.debug("cleanup of failed adapter %s failed", name, exc_info=True)
                if self._active != BASE:
                    self._peft.set_adapter(peft_name(self._active))
            if isinstance(exc, AdapterLoadError):
                raise
            raise AdapterLoadError(f"could not load adapter {name!r}: {exc}") from exc
        self._resident.append(name)

    def _evict_sync(self) -> None:
        # keep the active adapter and the one before it resident, so a rollback is instant
        while len(self._resident) > self.keep_loaded:
            victim = next((n for n in self._resident if n != self._active and n not in self._pinned), None)
            if victim is None:
                break
            self._resident.remove(victim)
            self._peft.delete_adapter(peft_name(victim))

    async def health_check(self) -> None:
        """Generate one short sample with the active adapter, outside the queue bound; raises if it fails."""
        params = replace(self.params, max_new_tokens=4)
        (sample,) = await self._run(self._generate_sync, 1, "", params, True, None, 0)
        if not sample.completion_ids:
            raise AdapterLoadError(f"adapter {self._active!r} generated nothing")

    def is_resident(self, name: str) -> bool:
        """True if the adapter is loaded in memory (a switch to it needs no disk read)."""
        return name == BASE or name in self._resident

    async def close(self) -> None:
        """Stop the worker thread after the work in flight."""
        await asyncio.get_running_loop().run_in_executor(None, partial(self._executor.shutdown, wait=True))
