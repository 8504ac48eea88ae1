"""`kilroy simulate` on a 4-bit base: the offline demo's whole loop with the tiny model in 4-bit NF4 on CPU."""

import json

import pytest

from bot.cli.main import main
from tests.cli.test_main import env  # noqa: F401 - fixture


@pytest.mark.slow
def test_simulate_two_nights_on_4bit(env, tmp_path, monkeypatch, caplog):  # noqa: F811
    """Two nights serve, score and train on the 4-bit model and write the documented JSON."""
    caplog.set_level("INFO")
    monkeypatch.setenv("KILROY_QUANTIZATION", "4bit")
    out = tmp_path / "sim.json"
    sizes = ["--nights", "2", "--posts-per-night", "12", "--eval-samples", "16"]
    assert main(["simulate", *sizes, "--json", str(out), "--workdir", str(tmp_path / "w")]) == 0
    assert "quantization=4bit" in caplog.text
    data = json.loads(out.read_text())
    assert [n["night"] for n in data["nights"]] == [0, 1] and all(n["posts"] == 12 for n in data["nights"])
    assert data["nights"][0]["adapter"] == "base" and data["lift"] > 0
