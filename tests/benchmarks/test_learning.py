"""Keeps benchmarks/learning.py working: its --quick mode on the smallest settings."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_learning_benchmark_quick_runs(tiny_model_dir, tmp_path):
    out = tmp_path / "runs.json"
    proc = subprocess.run(
        [
            sys.executable,
            "benchmarks/learning.py",
            "--quick",
            "--model",
            str(tiny_model_dir),
            "--nights",
            "2",
            "--trainers",
            "ours,kilroy",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "KILROY_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "lift [95% CI]" in proc.stdout
    import json

    data = json.loads(out.read_text())
    runs = data["report"]
    assert {r["trainer"] for r in runs} == {"ours", "kilroy"}
    assert all(r["lift"] > 0 and r["kl"] >= 0 and 0 <= r["repeat3"] <= 1 for r in runs)
    assert set(data["table"]) == {"ours", "kilroy"} and data["table"]["ours"]["n"] == 1
