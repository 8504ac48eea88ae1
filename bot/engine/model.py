"""Loading the base model (hub id, local path, or the offline `tiny`), quantization, and the LoRA shape."""

from __future__ import annotations

import logging
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


def choose_quantization(requested: str, cuda: bool) -> str:
    """Resolve `auto` and refuse quantization that needs CUDA on a machine without it."""
    if requested == "auto":
        return "4bit" if cuda else "none"
    if requested in ("4bit", "8bit") and not cuda:
        raise ModelLoadError(
            f"KILROY_QUANTIZATION={requested} needs a CUDA GPU (bitsandbytes), and none is available; "
            "set KILROY_QUANTIZATION=auto (full precision on CPU) or none"
        )
    return requested


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
    """Load the base model and tokenizer as `settings` asks, quantized on CUDA when asked or `auto`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cuda = torch.cuda.is_available() and device != "cpu"
    quant = choose_quantization(settings.quantization, cuda)
    path = resolve_model_path(settings.name, data_dir)
    kwargs: dict[str, Any] = {}
    if quant in ("4bit", "8bit"):
        from transformers import BitsAndBytesConfig

        if quant == "4bit":
            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_compute_dtype=torch.bfloat16,
                bnb_4bit_use_double_quant=True,
            )
        else:
            kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
        kwargs["device_map"] = {"": 0}
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
    run_device = "cuda" if cuda else "cpu"
    if quant == "none":
        model.to(run_device)
    model.eval()
    if quant == "none" and run_device == "cpu":
        log.info("no CUDA GPU: running %s in full precision (fp32) on CPU, without quantization", settings.name)
    else:
        log.info("running %s on %s with quantization=%s", settings.name, run_device, quant)
    return LoadedModel(model=model, tokenizer=tokenizer, device=run_device, quantization=quant, name=settings.name)


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
