"""Keeps benchmarks/communities.py's report honest: it pools runs from several files and checks the issue's bars."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_communities", ROOT / "benchmarks" / "communities.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _out(mode, seed, lifts):
    run = {
        "mode": mode,
        "seed": seed,
        "communities": [
            {"audience": f"a{i}", "lift": x, "nights": [{"expected_score": 1.0}, {"expected_score": x}]}
            for i, x in enumerate(lifts)
        ],
    }
    return {
        "setting": "divergent",
        "audiences": ["a0", "a1"],
        "nights": 2,
        "posts_per_night": 16,
        "modes": {mode: {"runs": [run]}},
    }


def test_the_report_pools_seeds_from_several_files_and_checks_the_bars(tmp_path, capsys):
    outs = [
        _out("community", 0, [2.0, 1.5]),
        _out("community", 1, [2.1, 1.4]),
        _out("community", 2, [2.2, 1.6]),
        _out("shared", 0, [1.2, 1.6]),
        _out("shared", 1, [1.3, 1.3]),
        _out("shared", 2, [1.1, 1.5]),
    ]
    files = []
    for i, out in enumerate(outs):
        files.append(tmp_path / f"{i}.json")
        files[-1].write_text(json.dumps(out))
    merged = tmp_path / "merged.json"
    assert _bench().main(["--merge", *map(str, files), "--json", str(merged)]) == 0
    checks = json.loads(merged.read_text())["checks"]
    assert checks["per_community_above_shared"] == [True, True]  # 2.1 > 1.2; 1.5 > 1.467
    assert checks["intervals_apart"] == [True, False]
    printed = capsys.readouterr().out
    assert "seeds: 2.00 2.10 2.20" in printed and "community: seeds [0, 1, 2]" in printed
