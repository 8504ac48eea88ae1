import pytest

from bot.config.settings import ModelSettings
from bot.engine.model import ModelLoadError, bnb_unsupported, choose_precision, load_base


def _supported(_mode, _device):
    return None


def _unsupported(mode, device):
    return f"bitsandbytes 0.42.0 cannot run {mode} layers on {device} (RuntimeError: no kernel)"


def test_auto_picks_4bit_on_cuda_and_full_precision_on_cpu():
    """auto follows the benchmark: 4-bit NF4 on CUDA, fp32 on CPU (fastest there); each choice says why."""
    cuda = choose_precision("auto", "cuda", cuda_bf16=True, unsupported=_supported)
    assert (cuda.quantization, cuda.compute_dtype) == ("4bit", "bfloat16") and "auto on CUDA" in cuda.reason
    cpu = choose_precision("auto", "cpu", unsupported=_supported)
    assert (cpu.quantization, cpu.compute_dtype) == ("none", "float32") and "measured" in cpu.reason


def test_compute_dtype_follows_the_device():
    """bf16 only on a GPU that supports it; fp32 on CPU and on older GPUs, whatever the quantization."""
    assert choose_precision("4bit", "cpu", unsupported=_supported).compute_dtype == "float32"
    assert choose_precision("4bit", "cuda", cuda_bf16=False, unsupported=_supported).compute_dtype == "float32"
    assert choose_precision("none", "cuda", cuda_bf16=True, unsupported=_supported).compute_dtype == "bfloat16"


def test_auto_on_cuda_without_a_working_bitsandbytes_falls_back_to_full_precision_and_says_why():
    picked = choose_precision("auto", "cuda", unsupported=_unsupported)
    assert picked.quantization == "none" and "0.42.0" in picked.reason


@pytest.mark.parametrize("mode", ["4bit", "8bit"])
def test_quantization_bitsandbytes_cannot_run_is_a_clear_error(mode):
    """Asking for a quantization the installed bitsandbytes cannot run here names its version and the fix."""
    with pytest.raises(ModelLoadError, match=rf"KILROY_QUANTIZATION={mode}: bitsandbytes 0\.42\.0.*pip install -U"):
        choose_precision(mode, "cpu", unsupported=_unsupported)


@pytest.mark.parametrize("mode", ["4bit", "8bit"])
def test_installed_bitsandbytes_runs_quantized_layers_on_cpu(mode):
    """The probe on the real bitsandbytes (0.50.2 runs 4-bit NF4 and LLM.int8() on CPU): CI proves the CPU path."""
    assert bnb_unsupported(mode, "cpu") is None


@pytest.mark.slow
def test_tiny_model_reloads_through_from_pretrained(tiny_model_dir, tmp_path, caplog):
    """The tiny model saved by the builder loads through the same path as a hub model, on CPU in fp32."""
    caplog.set_level("INFO")
    loaded = load_base(ModelSettings(name=str(tiny_model_dir), quantization="auto"), tmp_path, device="cpu")
    assert loaded.quantization == "none" and loaded.device == "cpu"
    assert "full precision" in caplog.text
    ids = loaded.tokenizer("my fluffy cat 🐱")["input_ids"]
    assert loaded.tokenizer.decode(ids) == "my fluffy cat 🐱"
    assert loaded.context_size == 256


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="KILROY_MODEL"):
        load_base(ModelSettings(name=str(tmp_path / "nowhere")), tmp_path, device="cpu")
