"""Loading the base model (hub id, local path, or the offline `tiny`), quantization, and the LoRA shape."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.config.settings import ModelSettings

log = logging.getLogger(__name__)

# GPT-2's attention (c_attn, c_proj) and MLP (c_fc, c_proj) projections. They are Conv1D layers that store the
# weight transposed, hence fan_in_fan_out=True in the LoRA config.
LORA_TARGETS = ["c_attn", "c_proj", "c_fc"]


class ModelLoadError(Exception):
    """The base model could not be loaded; the message says what to change."""


@dataclass
class LoadedModel:
    """A base model ready to generate: the model, its tokenizer, where it lives and how it is quantized."""

    model: Any
    tokenizer: Any
    device: str
    quantization: str  # "4bit" | "8bit" | "none"
    name: str
    compute_dtype: str = "float32"  # the dtype the layers compute in: "float32" | "bfloat16"
    reason: str = ""  # why this precision (auto's choice, or the setting)

    @property
    def context_size(self) -> int:
        """Maximum tokens (prompt + generation) the model accepts."""
        return int(getattr(self.model.config, "n_positions", None) or self.model.config.max_position_embeddings)


def resolve_model_path(name: str, data_dir: Path) -> str:
    """`tiny` -> the cached offline model (built if missing); anything else is a hub id or a local path."""
    if name == "tiny" or name.startswith("tiny:"):
        from bot.engine.tiny import ensure_tiny

        preset = name.split(":", 1)[1] if ":" in name else "default"
        return str(ensure_tiny(data_dir, preset))
    return name


def _bnb_version() -> str:
    try:
        from importlib.metadata import version

        return version("bitsandbytes")
    except Exception:
        return "?"


def bnb_unsupported(mode: str, device: str) -> str | None:
    """None when the installed bitsandbytes runs `mode` ("4bit" | "8bit") layers on `device`; else why not.

    A probe, not a version table: one 64x64 quantized layer is built on the device and run once (milliseconds), so
    the answer is whatever this bitsandbytes build really does on this machine.
    """
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        return "bitsandbytes is not installed"
    try:
        import bitsandbytes as bnb
        import torch

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if mode == "4bit":
                layer = bnb.nn.Linear4bit(64, 64, compute_dtype=torch.float32, quant_type="nf4")
            else:
                layer = bnb.nn.Linear8bitLt(64, 64, has_fp16_weights=False)
            layer = layer.to(device)  # quantizes the weights on the device
            with torch.no_grad():
                out = layer(torch.randn(2, 64, device=device))
        if not bool(torch.isfinite(out).all()):
            raise RuntimeError("the probe layer returned non-finite values")
    except Exception as exc:
        return f"bitsandbytes {_bnb_version()} cannot run {mode} layers on {device} ({exc.__class__.__name__}: {exc})"
    return None


@dataclass(frozen=True)
class Precision:
    """How the base model is held: its quantization, the dtype its layers compute in, and why."""

    quantization: str  # "4bit" | "8bit" | "none"
    compute_dtype: str  # "float32" | "bfloat16"
    reason: str


# `auto` follows benchmarks/quantization.py (table in benchmarks/README.md). On CPU (2 cores, GPT-2's 124M shape)
# 4-bit NF4 holds the parameters in 0.40x fp32's bytes, but the process is no smaller as loaded (the memory-mapped
# fp32 checkpoint stays resident), a night's training peaks as high (activations and logits), and with the modes
# interleaved in one process it generated at 0.2-0.7x fp32's tokens/s (8-bit 0.3-0.6x); a bf16 model ran at
# about 0.5x (CPUs without bf16 instructions). So fp32 on CPU. On CUDA, 4-bit NF4 with bf16 compute
# is QLoRA's setting: the weights in 0.4x the GPU memory.
AUTO_CPU_REASON = (
    "auto on CPU: full precision (fp32), measured fastest there; 4-bit NF4 holds the weights in 0.40x the bytes "
    "but generated at 0.2-0.7x the tokens/s and did not shrink the process (benchmarks/quantization.py); "
    "set KILROY_QUANTIZATION=4bit to run the quantized model anyway"
)
AUTO_CUDA_REASON = "auto on CUDA: 4-bit NF4, double quantization (QLoRA's setting: 0.4x the memory)"


def choose_precision(
    requested: str,
    device: str,
    *,
    cuda_bf16: bool = False,
    unsupported: Callable[[str, str], str | None] | None = None,
) -> Precision:
    """Resolve KILROY_QUANTIZATION for `device` ("cpu" | "cuda"): `auto` per the benchmark, an explicit mode only
    where the installed bitsandbytes runs it (else ModelLoadError naming its version and the fix).

    The compute dtype follows the device: bf16 on a CUDA GPU that supports it, fp32 everywhere else (bf16 compute
    is slow on CPUs without bf16 instructions).
    """
    unsupported = unsupported or bnb_unsupported  # looked up per call: a test may replace the probe
    compute = "bfloat16" if device == "cuda" and cuda_bf16 else "float32"
    if requested == "auto":
        if device != "cuda":
            return Precision("none", compute, AUTO_CPU_REASON)
        problem = unsupported("4bit", device)
        if problem is None:
            return Precision("4bit", compute, AUTO_CUDA_REASON)
        return Precision("none", compute, f"auto on CUDA would take 4-bit NF4, but {problem}: full precision")
    if requested in ("4bit", "8bit"):
        problem = unsupported(requested, device)
        if problem is not None:
            raise ModelLoadError(
                f"KILROY_QUANTIZATION={requested}: {problem}; upgrade it (pip install -U bitsandbytes: 0.50.2 runs "
                "4-bit and 8-bit on CPU and CUDA) or set KILROY_QUANTIZATION=auto or none"
            )
    return Precision(requested, compute, f"KILROY_QUANTIZATION={requested}")


def keep_4bit_weights_unpacked(model: Any) -> None:
    """Hold bitsandbytes' 4-bit layers in training mode, whatever mode the rest of the model is in.

    On a CPU with AVX-512 BF16, a 4-bit layer in eval mode repacks its weights in place for faster inference on
    its first gradient-free call, and a backward pass through the repacked weights then fails. The trainer keeps
    the model in eval mode (GPT-2's dropout off) and samples before and after its steps, so it calls this.
    """
    try:
        from bitsandbytes.nn import Linear4bit
    except ImportError:
        return
    for module in model.modules():
        if isinstance(module, Linear4bit):
            module.train()


def _announce_download(path: str) -> None:
    """Say so before a first download from the hub: where it goes and roughly how large it is."""
    if Path(path).exists():
        return
    try:
        from huggingface_hub import constants, try_to_load_from_cache

        if isinstance(try_to_load_from_cache(path, "config.json"), str):
            return
        log.info(
            "downloading %s from the Hugging Face hub into %s (once; gpt2 is about 550 MB, gpt2-medium 1.5 GB)",
            path,
            constants.HF_HUB_CACHE,
        )
    except Exception:  # only a notice: never stop a load over it
        log.debug("could not check the hub cache", exc_info=True)


def load_base(settings: ModelSettings, data_dir: Path, *, device: str | None = None) -> LoadedModel:
    """Load the base model and tokenizer as `settings` asks: on CUDA when there is one (unless `device` is "cpu"),
    quantized as KILROY_QUANTIZATION resolves there (see choose_precision)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run_device = "cuda" if torch.cuda.is_available() and device != "cpu" else "cpu"
    cuda_bf16 = run_device == "cuda" and torch.cuda.is_bf16_supported()
    precision = choose_precision(settings.quantization, run_device, cuda_bf16=cuda_bf16)
    quant, compute = precision.quantization, getattr(torch, precision.compute_dtype)
    path = resolve_model_path(settings.name, data_dir)
    kwargs: dict[str, Any] = {}
    if quant in ("4bit", "8bit"):
        from transformers import BitsAndBytesConfig

        if quant == "4bit":
            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_compute_dtype=compute,
                bnb_4bit_use_double_quant=True,
            )
        else:
            kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
            # LLM.int8() casts fp32 inputs to fp16 and says so at WARNING on every matmul, thousands per post
            logging.getLogger("bitsandbytes.autograd._functions").setLevel(logging.ERROR)
        # the quantized weights are made where they will run; the tied embedding and layer norms stay fp32
        kwargs["device_map"] = {"": 0} if run_device == "cuda" else "cpu"
    _announce_download(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except OSError as exc:
        raise ModelLoadError(
            f"could not load model {settings.name!r} ({exc.__class__.__name__}: {exc}); check KILROY_MODEL "
            "(a hub id such as gpt2, a local folder, or tiny for the offline model) and your network"
        ) from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if quant == "none":
        model.to(run_device)
    model.eval()
    log.info(
        "running %s on %s: quantization=%s, compute %s (%s)",
        settings.name,
        run_device,
        quant,
        precision.compute_dtype,
        precision.reason,
    )
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        device=run_device,
        quantization=quant,
        name=settings.name,
        compute_dtype=precision.compute_dtype,
        reason=precision.reason,
    )


def lora_config(settings: ModelSettings) -> Any:
    """The LoRA configuration for GPT-2-shaped models."""
    from peft import LoraConfig

    return LoraConfig(
        r=settings.lora_rank,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=LORA_TARGETS,
        fan_in_fan_out=True,
        bias="none",
        task_type="CAUSAL_LM",
    )
