"""The 4-bit path on a real GPU. Skipped without CUDA (see conftest)."""

import asyncio

import pytest

from bot.config.settings import ModelSettings
from bot.engine.generator import Generator, SamplingParams
from bot.engine.model import load_base, lora_config

pytestmark = pytest.mark.gpu


def test_4bit_load_lora_generate_and_backward(tiny_model_dir, tmp_path):
    import torch
    from peft import get_peft_model, prepare_model_for_kbit_training

    loaded = load_base(ModelSettings(name=str(tiny_model_dir), quantization="4bit"), tmp_path)
    assert loaded.quantization == "4bit" and loaded.device == "cuda"
    samples = asyncio.run(Generator(loaded, SamplingParams(max_new_tokens=16)).generate(4))
    assert len(samples) == 4
    fresh = load_base(ModelSettings(name=str(tiny_model_dir), quantization="4bit"), tmp_path)
    model = get_peft_model(prepare_model_for_kbit_training(fresh.model), lora_config(ModelSettings()))
    ids = torch.tensor([[0, 5, 6, 7]], device="cuda")
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if "lora_" in n and p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
