"""The only object that touches the live model: generation and adapter swaps, on one worker thread.

One thread on purpose: it serialises generations and swaps, so a swap (which rewrites weights in place) can never
land in the middle of a generation, and the event loop never runs torch.

The API, for one lineage and for many (issue 24: a community's adapter is referenced as "g123/v0004", the commons'
as "commons/v0002", "base" is no adapter; any string works, the engine maps it to a valid peft name itself):

- `generate(n, prompt=..., adapter=None)`: n samples of one prompt by one adapter (None: the serving one).
- `generate_mixed([Request(adapter, prompt, n), ...])`: every request's samples in ONE batch, each row written by
  its own adapter (peft's mixed-adapter batch). Returns one list of `n` samples per request, in order. The samples
  of a request are exactly what `generate` would draw for it alone, up to sampling noise (same distribution).
- Resident adapters form a bounded LRU cache (`keep_loaded`, KILROY_MAX_RESIDENT_ADAPTERS): an adapter a call names
  that is not resident is loaded on demand from `Request.path`, else from `resolver(ref)` (a callable the
  composition root sets: reference -> folder), else the call fails with AdapterLoadError. Every use makes an adapter
  the most recently used; the least recently used goes once the cache is over its bound, except the serving one,
  the pinned ones (`pin(names, key=...)`, one key per trial) and those of the batch in flight (bot/engine/resident.py).
- `use_adapter(ref, path)`: the serving adapter (single-lineage callers); `preload(ref, path)`: resident, pinned.
- `resident`, `is_resident(ref)`: what is in memory now.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from bot.config.settings import ModelSettings, SamplingParams
from bot.domain.records import BASE
from bot.engine.adapter_check import AdapterShapeError, check_adapter_shape
from bot.engine.batched_lora import batched_lora
from bot.engine.model import LORA_TARGETS, LoadedModel
from bot.engine.resident import DEFAULT_PIN, ResidentSet
from bot.engine.sampling import (
    PEFT_BASE,
    Row,
    Sample,
    prompt_ids_for,
    sample_batch,
    sample_rows,
    stop_token_ids,
)
from bot.engine.threads import set_torch_threads

log = logging.getLogger(__name__)

__all__ = [
    "AdapterLoadError",
    "Generator",
    "Request",
    "Sample",
    "SamplingParams",
    "prompt_ids_for",
    "sample_batch",
    "stop_token_ids",
]
T = TypeVar("T")


class AdapterLoadError(Exception):
    """An adapter could not be loaded; the serving adapter is unchanged. `adapter` names it when known."""

    def __init__(self, message: str, adapter: str | None = None) -> None:
        super().__init__(message)
        self.adapter = adapter


class GeneratorBusy(Exception):
    """More generations are waiting than KILROY_MAX_QUEUE allows; the caller should try again shortly."""

    def __init__(self) -> None:
        super().__init__("Kilroy is busy writing for others: try again shortly.")


@dataclass(frozen=True)
class Request:
    """`n` samples of one prompt by one adapter, as a part of a mixed batch.

    `adapter` is the serving reference recorded on each sample ("g123/v0004", "commons/v0002", "base").
    `prompt_ids` (when given) are used instead of tokenizing `prompt`. `path` is where to load the adapter from if
    it is not resident (default: the generator's resolver).
    """

    adapter: str = BASE
    prompt: str = ""
    n: int = 1
    prompt_ids: tuple[int, ...] | None = None
    path: Path | None = None


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
    """Generates text with the base model plus LoRA adapters (one serving, any resident one per call or per row of a
    mixed batch); swaps adapters without a restart."""

    def __init__(
        self,
        loaded: LoadedModel,
        params: SamplingParams,
        *,
        keep_loaded: int = ModelSettings.max_resident_adapters,
        max_queue: int | None = None,
        threads: int | None = None,
        lora_rank: int = ModelSettings.lora_rank,
        lora_targets: Sequence[str] = tuple(LORA_TARGETS),
        resolver: Callable[[str], Path] | None = None,
    ) -> None:
        self.loaded = loaded
        # the configured LoRA shape (KILROY_LORA_RANK, the target modules): an adapter is checked against it before
        # anything is allocated (bot/engine/adapter_check.py)
        self.lora_rank, self.lora_targets = lora_rank, tuple(lora_targets)
        self.params = params
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
        # adapters loaded in memory (KILROY_MAX_RESIDENT_ADAPTERS, least recently used out; bot/engine/resident.py)
        self._resident = ResidentSet(keep_loaded)
        # where a non-resident adapter is loaded from when a call gives no path (called on the model thread)
        self.resolver = resolver
        # how a batch of several adapters runs: "peft" (peft's adapter_names: a loop over the adapters in every
        # layer; measured in benchmarks/serving.py) or "batched" (stacked LoRA weights, two bmm per layer,
        # bot/engine/batched_lora.py; equal outputs in tests, its speed not yet measured on the 124M shape)
        self.mixed_batches = "peft"
        self._keys_by_shape: dict[str, set[str]] = {}  # an adapter shape's weight keys (see _expected_keys)
        self.observers: list[Callable[[float, list[Sample]], None]] = []  # called with (seconds, samples) per call

    @property
    def active(self) -> str:
        """The adapter serving right now (`base` for none)."""
        return self._active

    @property
    def keep_loaded(self) -> int:
        """How many adapters stay resident at most (outside a batch that needs more)."""
        return self._resident.capacity

    @property
    def resident(self) -> list[str]:
        """Resident adapters, least recently used first."""
        return self._resident.names

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

        `adapter` names an adapter to write with for this call only (an A/B trial's arm); None uses the serving
        one. A non-resident one is loaded through the resolver (AdapterLoadError without one). The choice travels
        with the call into the model thread, so concurrent calls never mix arms.
        Raises GeneratorBusy at once when the queue is full. The check and the count happen before the first await,
        so simultaneous callers cannot all slip past the bound.
        """
        params = self._params(overrides)  # a bad override fails here, on the caller's side
        return await self._queued(self._generate_sync, n, prompt, params, stop_at_newline, prompt_ids, seed, adapter)

    async def generate_mixed(
        self,
        requests: Sequence[Request],
        *,
        stop_at_newline: bool = True,
        seed: int | None = None,
        **overrides: Any,
    ) -> list[list[Sample]]:
        """Every request's `n` samples in one batch, each row by its request's adapter; one list per request.

        Loads missing adapters first (from `Request.path` or the resolver) and keeps the batch's adapters from
        eviction until it is done. All or nothing: an adapter that cannot load raises AdapterLoadError (its
        `adapter` names it) and nothing is generated. One call counts once against KILROY_MAX_QUEUE.
        """
        if not requests:
            return []
        return await self._queued(self._mixed_sync, list(requests), self._params(overrides), stop_at_newline, seed)

    async def _queued(self, fn: Callable[..., T], *args: Any) -> T:
        if self.busy:
            raise GeneratorBusy()
        started = time.perf_counter()
        self._pending += 1
        try:
            out = await self._run(self._with_threads, self._threads_now(), fn, *args)
        finally:
            self._pending -= 1
        samples: list[Sample] = [s for part in out for s in (part if isinstance(part, list) else [part])]
        for observe in self.observers:
            try:
                observe(time.perf_counter() - started, samples)
            except Exception:  # an observer (metrics) must never cost a post
                log.warning("generation observer failed", exc_info=True)
        return out

    def _params(self, overrides: dict[str, Any]) -> SamplingParams:
        return replace(self.params, **overrides) if overrides else self.params

    def _seeded(self, seed: int | None, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn` with the RNG seeded, without resetting the RNG that later unseeded posts draw from."""
        if seed is None:
            return fn(*args)
        import torch

        # a seeded sample (a health check, a reproducible `generate --seed`) must not reset the RNG that later
        # unseeded posts draw from: fork it, seed the fork, and restore it afterwards
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            return fn(*args)

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
        name = self._active if adapter is None else adapter
        budget = max(1, self.context_size - params.max_new_tokens)
        tok = self.loaded.tokenizer
        ids = list(prompt_ids)[-budget:] if prompt_ids is not None else prompt_ids_for(tok, prompt, budget)
        rows = [Row(prompt, tuple(ids), name)] * n
        if name != BASE and name not in self._resident:  # loaded on demand through the resolver
            self._resident.in_flight = frozenset({name})
            try:
                self._ensure_resident(name, None)
                return self._seeded(seed, self._sample, rows, params, stop_at_newline)
            finally:
                self._resident.in_flight = frozenset()
                self._evict_sync()
        self._resident.touch(name)
        return self._seeded(seed, self._sample, rows, params, stop_at_newline)

    def _mixed_sync(
        self,
        requests: list[Request],
        p: SamplingParams,
        stop_at_newline: bool,
        seed: int | None,
    ) -> list[list[Sample]]:
        refs = list(dict.fromkeys(r.adapter for r in requests if r.adapter != BASE))
        paths = {r.adapter: r.path for r in requests if r.path is not None}
        self._resident.in_flight = frozenset(refs)  # none of them may go while the batch loads the others
        try:
            for ref in refs:
                self._ensure_resident(ref, paths.get(ref))
            for ref in refs:
                self._resident.touch(ref)
            budget = max(1, self.context_size - p.max_new_tokens)
            tok = self.loaded.tokenizer
            rows: list[Row] = []
            for r in requests:
                if r.prompt_ids is not None:
                    ids = list(r.prompt_ids)[-budget:]
                else:
                    ids = prompt_ids_for(tok, r.prompt, budget)
                rows += [Row(r.prompt, tuple(ids), r.adapter)] * r.n
            samples = self._seeded(seed, self._sample, rows, p, stop_at_newline) if rows else []
        finally:
            self._resident.in_flight = frozenset()
            self._evict_sync()
        out, at = [], 0
        for r in requests:
            out.append(samples[at : at + r.n])
            at += r.n
        return out

    def _sample(self, rows: list[Row], params: SamplingParams, stop_at_newline: bool) -> list[Sample]:
        """Sample the rows (their adapters resident): one adapter through the active-adapter path, several through
        peft's mixed-adapter batch."""
        tok = self.loaded.tokenizer
        kwargs = dict(params=params, stop_at_newline=stop_at_newline)
        if self._peft is None:  # no adapter was ever loaded: every row is the base model's
            return sample_rows(self.loaded.model, tok, rows, **kwargs)
        names = {r.adapter for r in rows}
        if len(names) > 1:
            inner = [None if r.adapter == BASE else peft_name(r.adapter) for r in rows]
            if self.mixed_batches == "peft":  # peft's own mixed batch: a loop over the adapters in every layer
                mixed = [replace(r, peft_adapter=name or PEFT_BASE) for r, name in zip(rows, inner, strict=True)]
                return sample_rows(self._peft, tok, mixed, **kwargs)
            with batched_lora(self._peft, inner):  # two batched matmuls per layer (bot/engine/batched_lora.py)
                return sample_rows(self._peft, tok, rows, **kwargs)
        (name,) = names
        if name == BASE:
            with self._peft.disable_adapter():
                return sample_rows(self._peft, tok, rows, **kwargs)
        if name == self._active:
            return sample_rows(self._peft, tok, rows, **kwargs)
        # another resident adapter for this call only (~3 ms each way); this thread runs nothing else meanwhile
        self._peft.set_adapter(peft_name(name))
        try:
            return sample_rows(self._peft, tok, rows, **kwargs)
        finally:
            if self._active != BASE:
                self._peft.set_adapter(peft_name(self._active))

    def _ensure_resident(self, name: str, path: Path | None) -> float:
        """On the model thread: load `name` if it is not resident (from `path`, else the resolver); return the
        seconds the load took (0 for a hit). The serving adapter stays the active one."""
        if self.is_resident(name):
            return 0.0
        if path is None and self.resolver is not None:
            try:
                path = self.resolver(name)
            except Exception as exc:
                raise AdapterLoadError(f"adapter {name!r} cannot be found: {exc}", name) from exc
        if path is None:
            raise AdapterLoadError(f"adapter {name!r} is not loaded; load it before generating with it", name)
        started = time.perf_counter()
        self._load_sync(name, path)
        if self._active != BASE:
            self._peft.set_adapter(peft_name(self._active))  # keep serving what served
        took = time.perf_counter() - started
        log.info("loaded adapter %s from disk in %.0f ms", name, took * 1000)
        return took

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
                raise AdapterLoadError(f"adapter {name!r} is not loaded and no path was given", name)
            self._load_sync(name, path)
        self._peft.set_adapter(peft_name(name))
        self._active = name
        self._resident.touch(name)  # most recently used last: eviction takes the least recently used
        self._evict_sync()
        took = time.perf_counter() - started
        log.info("serving adapter %s (switch took %.0f ms)", name, took * 1000)
        return took

    async def preload(self, name: str, path: Path | None = None, *, pin: bool = True, key: str = DEFAULT_PIN) -> float:
        """Make `name` resident without serving it (an A/B trial's candidate); `pin` adds it to the pins under
        `key`, which keeps it from eviction. `path` None: the resolver's. Returns the seconds the load took (0 if
        it was resident)."""
        return await self._run(self._preload_sync, name, path, pin, key)

    def _preload_sync(self, name: str, path: Path | None, pin: bool, key: str = DEFAULT_PIN) -> float:
        took = 0.0
        if name != BASE:
            took = self._ensure_resident(name, path)
            self._resident.touch(name)
        if pin:
            self._resident.pin(self._resident.pins(key) | {name}, key)
        self._evict_sync()
        return took

    def pin(self, names: Iterable[str], *, key: str = DEFAULT_PIN) -> None:
        """Exactly these adapters are kept from eviction under `key` (a trial's arms; one key per community's
        trial); an empty set releases the key. Pins under other keys are untouched."""
        self._resident.pin(names, key)

    @property
    def pinned(self) -> frozenset[str]:
        """Every pinned adapter, whatever its key."""
        return self._resident.pinned

    def _load_sync(self, name: str, path: Path) -> None:
        from peft import PeftModel, get_peft_model_state_dict
        from safetensors.torch import load_file

        from bot.domain.records import WEIGHTS

        inner = peft_name(name)
        try:  # before any allocation: peft would build layers of whatever rank the folder's own config says
            check_adapter_shape(Path(path), self.loaded.model, max_rank=self.lora_rank, targets=self.lora_targets)
        except AdapterShapeError as exc:
            raise AdapterLoadError(f"adapter {name!r} is refused: {exc}", name) from exc
        try:
            tensors = load_file(str(Path(path) / WEIGHTS))
            if self._peft is None:
                self._peft = PeftModel.from_pretrained(self.loaded.model, str(path), adapter_name=inner)
                self._peft.eval()
            else:
                self._peft.load_adapter(str(path), adapter_name=inner)
            # peft loads whatever keys match and silently keeps fresh (zero) LoRA weights for the rest: a file whose
            # keys match nothing would serve the base model under the adapter's name. Compare exactly.
            check_adapter_weights(tensors, self._expected_keys(inner, get_peft_model_state_dict), name)
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
                exc.adapter = exc.adapter or name
                raise
            raise AdapterLoadError(f"could not load adapter {name!r}: {exc}", name) from exc
        self._resident.add(name)

    def _expected_keys(self, inner: str, state_dict: Callable[..., dict[str, Any]]) -> set[str]:
        """The weight keys an adapter of this config must have. They name no adapter, so adapters of one shape share
        them: computed once per shape (a walk over every parameter, ~15% of a cold load on the 124M shape)."""
        cfg = self._peft.peft_config[inner]
        shape = repr((cfg.target_modules, cfg.bias, cfg.modules_to_save, cfg.layers_to_transform))
        if shape not in self._keys_by_shape:
            self._keys_by_shape[shape] = set(state_dict(self._peft, adapter_name=inner))
        return self._keys_by_shape[shape]

    def _evict_sync(self) -> None:
        """Evict least recently used adapters down to the bound; never the serving, a pinned or an in-flight one."""
        for victim in self._resident.victims(keep={self._active}):
            with warnings.catch_warnings():  # "X was active which is now deleted": only while the base serves
                warnings.simplefilter("ignore", UserWarning)
                self._peft.delete_adapter(peft_name(victim))
            log.debug("evicted adapter %s", victim)

    async def unload(self, name: str) -> bool:
        """Drop `name` from memory now (a lineage deleted, a trial over); False if it is not resident, serves, is
        pinned or in flight."""
        return await self._run(self._unload_sync, name)

    def _unload_sync(self, name: str) -> bool:
        if name not in self._resident or name == self._active or name in self._resident.pinned:
            return False
        self._resident.remove(name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            self._peft.delete_adapter(peft_name(name))
        return True

    async def health_check(self) -> None:
        """Generate one short sample with the active adapter, outside the queue bound; raises if it fails."""
        params = replace(self.params, max_new_tokens=4)
        (sample,) = await self._run(self._generate_sync, 1, "", params, True, None, 0)
        if not sample.completion_ids:
            raise AdapterLoadError(f"adapter {self._active!r} generated nothing", self._active)

    def is_resident(self, name: str) -> bool:
        """True if the adapter is loaded in memory (a switch to it needs no disk read)."""
        return name == BASE or name in self._resident

    async def close(self) -> None:
        """Stop the worker thread after the work in flight."""
        await asyncio.get_running_loop().run_in_executor(None, partial(self._executor.shutdown, wait=True))
