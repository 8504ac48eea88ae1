import pytest

from bot.config.settings import ModelSettings
from bot.engine.model import ModelLoadError, choose_quantization, load_base


def test_auto_picks_4bit_on_cuda_and_full_precision_on_cpu():
    assert choose_quantization("auto", cuda=True) == "4bit"
    assert choose_quantization("auto", cuda=False) == "none"


@pytest.mark.parametrize("mode", ["4bit", "8bit"])
def test_quantization_without_cuda_is_a_clear_error(mode):
    """Asking for bitsandbytes quantization on a CPU-only machine names the variable and the fix."""
    with pytest.raises(ModelLoadError, match=f"KILROY_QUANTIZATION={mode}.*auto"):
        choose_quantization(mode, cuda=False)


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
