"""The quantized path: 4-bit NF4 (and LLM.int8()) on CPU in every CI run; the same on a real GPU where one exists."""

import pytest

from bot.adapters.store import AdapterStore
from bot.config.settings import ModelSettings
from bot.engine.generator import Generator, SamplingParams
from bot.engine.model import load_base, lora_config
from tests.support.adapters import make_adapter

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("mode", ["4bit", "8bit"])
async def test_quantized_tiny_model_generates_on_cpu(tiny_model_dir, tmp_path, mode):
    """The tiny model loads with bitsandbytes' quantized layers on CPU (fp32 compute) and samples through the
    Generator with the no-repeat guard on, as the bot serves."""
    from bitsandbytes.nn import Linear4bit, Linear8bitLt

    loaded = load_base(ModelSettings(name=str(tiny_model_dir), quantization=mode), tmp_path, device="cpu")
    assert (loaded.quantization, loaded.device, loaded.compute_dtype) == (mode, "cpu", "float32")
    layer = Linear4bit if mode == "4bit" else Linear8bitLt
    assert isinstance(loaded.model.transformer.h[0].attn.c_attn, layer)
    g = Generator(loaded, SamplingParams(max_new_tokens=16, no_repeat_ngram=3))
    try:
        samples = await g.generate(4, seed=0)
    finally:
        await g.close()
    assert len(samples) == 4 and all(s.completion_ids for s in samples)


async def test_4bit_serving_swaps_adapters_and_rolls_back(tiny_model_dir, tmp_path):
    """On a 4-bit base, adapters trained elsewhere load, serve, swap and roll back (the serving half of a night)."""
    settings = ModelSettings(name=str(tiny_model_dir), quantization="4bit")
    store = AdapterStore(tmp_path / "adapters")
    fp32 = load_base(ModelSettings(name=str(tiny_model_dir), quantization="none"), tmp_path, device="cpu")
    a, b = make_adapter(fp32, store, 1), make_adapter(fp32, store, 2)
    g = Generator(load_base(settings, tmp_path, device="cpu"), SamplingParams(max_new_tokens=12))
    try:
        await g.use_adapter(a, store.path(a))
        await g.use_adapter(b, store.path(b))
        assert (await g.generate(2, seed=0))[0].adapter == b
        await g.use_adapter(a, None)  # rollback: still resident, no disk read
        await g.health_check()
        assert g.active == a and (await g.generate(1, seed=0))[0].adapter == a
    finally:
        await g.close()


def test_4bit_lora_trains_after_sampling_on_the_same_instance(tiny_model_dir, tmp_path):
    """QLoRA on CPU: prepare_model_for_kbit_training, a LoRA in fp32, finite gradients, even after a sampling pass
    on that instance (the trainer samples before its steps; bitsandbytes may repack 4-bit weights for inference)."""
    import torch
    from peft import get_peft_model, prepare_model_for_kbit_training

    from bot.engine.generator import sample_batch
    from bot.engine.model import keep_4bit_weights_unpacked

    loaded = load_base(ModelSettings(name=str(tiny_model_dir), quantization="4bit"), tmp_path, device="cpu")
    model = get_peft_model(prepare_model_for_kbit_training(loaded.model, False), lora_config(ModelSettings()))
    model.eval()
    keep_4bit_weights_unpacked(model)
    sample_batch(
        model,
        loaded.tokenizer,
        prompt="",
        n=2,
        params=SamplingParams(max_new_tokens=8),
        stop_at_newline=True,
        context_size=loaded.context_size,
        adapter="x",
    )
    trainable = {p.dtype for p in model.parameters() if p.requires_grad}
    assert trainable == {torch.float32}
    ids = torch.tensor([[0, 5, 6, 7]])
    model(input_ids=ids, labels=ids).loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if "lora_" in n and p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.gpu
async def test_4bit_load_lora_generate_and_backward_on_cuda(tiny_model_dir, tmp_path):
    """The same on a real GPU: 4-bit NF4 with bf16 compute where the GPU has it."""
    import torch
    from peft import get_peft_model, prepare_model_for_kbit_training

    loaded = load_base(ModelSettings(name=str(tiny_model_dir), quantization="4bit"), tmp_path)
    assert loaded.quantization == "4bit" and loaded.device == "cuda"
    g = Generator(loaded, SamplingParams(max_new_tokens=16))
    try:
        samples = await g.generate(4)
    finally:
        await g.close()
    assert len(samples) == 4
    fresh = load_base(ModelSettings(name=str(tiny_model_dir), quantization="4bit"), tmp_path)
    model = get_peft_model(prepare_model_for_kbit_training(fresh.model), lora_config(ModelSettings()))
    ids = torch.tensor([[0, 5, 6, 7]], device="cuda")
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if "lora_" in n and p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


async def test_4bit_mixed_batch_writes_each_row_with_its_own_adapter(tiny_model_dir, tmp_path):
    """peft's mixed-adapter batch runs through bitsandbytes' 4-bit LoRA layers too: each row equals its adapter alone
    (deterministic decoding), in one generate."""
    from bot.engine.generator import Request

    store = AdapterStore(tmp_path / "adapters")
    fp32 = load_base(ModelSettings(name=str(tiny_model_dir), quantization="none"), tmp_path, device="cpu")
    paths = {ref: store.path(make_adapter(fp32, store, seed)) for ref, seed in (("g1/v0001", 1), ("g2/v0001", 2))}
    quantized = load_base(ModelSettings(name=str(tiny_model_dir), quantization="4bit"), tmp_path, device="cpu")
    g = Generator(quantized, SamplingParams(max_new_tokens=10), resolver=paths.get)
    try:
        requests = [Request("g1/v0001", "the cat"), Request("base", "the cat"), Request("g2/v0001", "the cat")]
        mixed = await g.generate_mixed(requests, top_k=1)
        alone = [(await g.generate(1, prompt="the cat", adapter=r.adapter, top_k=1))[0] for r in requests]
    finally:
        await g.close()
    assert [m[0].completion_ids for m in mixed] == [a.completion_ids for a in alone]
    assert len({a.completion_ids for a in alone}) == 3
