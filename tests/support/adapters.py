"""Adapter fixtures shared by tests and benchmarks: a real random LoRA, and a well-formed fake folder."""

from __future__ import annotations

import json
import time

from bot.adapters.store import BASE, AdapterStore
from bot.engine.model import load_base, lora_config


def make_adapter(loaded, store: AdapterStore, seed: int, rank: int = 4) -> str:
    """A LoRA adapter with random (non-zero) B weights, committed to the store."""
    import torch
    from peft import get_peft_model

    from bot.config.settings import ModelSettings

    torch.manual_seed(seed)
    # a fresh copy of the base: the serving model has LoRA layers injected in place once peft wraps it
    fresh = load_base(ModelSettings(name=loaded.name), store.root, device="cpu").model
    model = get_peft_model(fresh, lora_config(ModelSettings(lora_rank=rank)))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    tmp = store.new_temp_dir()
    model.save_pretrained(str(tmp))
    return store.commit(tmp, {"created_at": time.time(), "parent": BASE, "metrics": {}})


def fake_adapter(root, name):
    """A well-formed adapter folder (valid safetensors header, config, meta)."""
    d = root / name
    d.mkdir(parents=True)
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    (d / "adapter_model.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + b"\0\0\0\0")
    (d / "adapter_config.json").write_text("{}")
    (d / "meta.json").write_text(json.dumps({"created_at": time.time()}))
