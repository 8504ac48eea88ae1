"""An adapter's files checked against the configured LoRA shape before a single tensor is allocated.

peft builds an adapter's layers from the folder's own `adapter_config.json`: an `"r": 200000` there allocated
gigabytes before anything could object, and an adapter of another rank or other modules loaded and served. So the
config is bounded first (rank at most KILROY_LORA_RANK, target modules among the configured ones, plain LoRA and
nothing that adds layers), and the weights file's header must list exactly the tensors that config implies on this
model, with their shapes: read with `safetensors.safe_open`, which parses the header and maps nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bot.domain.records import WEIGHTS

CONFIG = "adapter_config.json"
FLOAT_DTYPES = frozenset({"F32", "F16", "BF16"})
# options that add tensors or layers beyond plain LoRA on the target modules, or move them: each must be unset
_UNSUPPORTED = (
    "modules_to_save",
    "layer_replication",
    "trainable_token_indices",
    "target_parameters",
    "use_dora",
    "lora_bias",
    "rank_pattern",
    "layers_to_transform",
    "layers_pattern",
    "exclude_modules",
    "alora_invocation_tokens",
    "use_bdlora",
    "use_qalora",
)


class AdapterShapeError(ValueError):
    """The adapter is not a LoRA of the configured shape; the message says what differs."""


def read_config(folder: Path, *, max_rank: int, targets: Iterable[str]) -> tuple[int, tuple[str, ...]]:
    """The adapter's rank and target modules, refused unless the rank is within `max_rank` and the modules are
    among `targets`."""
    try:
        config = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AdapterShapeError(f"unreadable {CONFIG}: {exc}") from exc
    if not isinstance(config, dict) or config.get("peft_type", "LORA") != "LORA":
        raise AdapterShapeError("not a LoRA adapter")
    rank = config.get("r")
    if not isinstance(rank, int) or isinstance(rank, bool) or not 1 <= rank <= max_rank:
        raise AdapterShapeError(f"rank {rank!r} is outside 1..{max_rank} (KILROY_LORA_RANK)")
    modules = config.get("target_modules")
    if not isinstance(modules, list) or not modules or not all(isinstance(m, str) for m in modules):
        raise AdapterShapeError(f"target_modules must be a list of module names, not {modules!r}")
    allowed = set(targets)
    if other := sorted(set(modules) - allowed):
        raise AdapterShapeError(f"target modules {other} are not among the configured ones {sorted(allowed)}")
    if config.get("bias", "none") != "none":
        raise AdapterShapeError(f"bias={config.get('bias')!r} is not supported (only 'none')")
    if used := [key for key in _UNSUPPORTED if config.get(key)]:
        raise AdapterShapeError(f"{', '.join(used)} set: only plain LoRA adapters are loaded")
    return rank, tuple(sorted(set(modules)))


def expected_shapes(model: Any, rank: int, modules: Iterable[str]) -> dict[str, tuple[int, ...]]:
    """Every LoRA tensor a rank-`rank` adapter on `modules` has on this model, with its shape, by saved key."""
    wanted = set(modules)
    out: dict[str, tuple[int, ...]] = {}
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] not in wanted:
            continue
        base = getattr(module, "base_layer", module)  # once peft has wrapped the model in place
        if hasattr(base, "in_features") and hasattr(base, "out_features"):  # Linear (quantized ones too)
            fan_in, fan_out = int(base.in_features), int(base.out_features)
        elif getattr(base, "weight", None) is not None and base.weight.dim() == 2:  # GPT-2's Conv1D: (in, out)
            fan_in, fan_out = (int(n) for n in base.weight.shape)
        else:
            continue
        out[f"base_model.model.{name}.lora_A.weight"] = (rank, fan_in)
        out[f"base_model.model.{name}.lora_B.weight"] = (fan_out, rank)
    return out


def check_adapter_shape(folder: Path, model: Any, *, max_rank: int, targets: Iterable[str]) -> None:
    """Refuse (AdapterShapeError) an adapter whose config or weights header is not the configured LoRA shape on
    `model`: every expected tensor present, floating point, of the expected shape, and nothing else."""
    from safetensors import safe_open

    rank, modules = read_config(folder, max_rank=max_rank, targets=targets)
    expected = expected_shapes(model, rank, modules)
    if not expected:
        raise AdapterShapeError(f"none of the modules {list(modules)} exists in this model")
    try:
        with safe_open(str(folder / WEIGHTS), framework="pt") as f:  # the header only: no tensor is read
            slices = {key: f.get_slice(key) for key in f.keys()}  # noqa: SIM118 (a safe_open is not iterable)
            found = {key: (tuple(s.get_shape()), s.get_dtype()) for key, s in slices.items()}
    except Exception as exc:  # safetensors raises its own error types for a malformed header
        raise AdapterShapeError(f"unreadable {WEIGHTS}: {exc}") from exc
    unexpected, missing = sorted(set(found) - set(expected)), sorted(set(expected) - set(found))
    if unexpected or missing:
        example = (unexpected or missing)[0]
        raise AdapterShapeError(
            f"the weights file does not match a rank-{rank} LoRA on {list(modules)}: {len(unexpected)} unexpected and "
            f"{len(missing)} missing tensor(s), e.g. {example}"
        )
    for key, shape in expected.items():
        got, dtype = found[key]
        if got != shape:
            raise AdapterShapeError(f"{key} has shape {list(got)}, expected {list(shape)} (rank {rank})")
        if dtype not in FLOAT_DTYPES:
            raise AdapterShapeError(f"{key} is {dtype}, not a floating-point tensor")
