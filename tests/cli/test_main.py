import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.cli.main import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(monkeypatch, tmp_path, tiny_model_dir):
    values = {
        "KILROY_DATA_DIR": str(tmp_path / "data"),
        "KILROY_ADAPTERS_DIR": str(tmp_path / "adapters"),
        "KILROY_MODEL": str(tiny_model_dir),
        "KILROY_GATE_SAMPLES": "8",
        "KILROY_MAX_NEW_TOKENS": "24",
        "KILROY_REWARD_MAX_P": "1",
    }
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env
    return values


def test_run_without_token_explains(env, capsys):
    """`kilroy run` without DISCORD_TOKEN exits 2 with how to get one and a pointer to simulate."""
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert "DISCORD_TOKEN" in err and "kilroy simulate" in err


def test_bad_config_exits_2_naming_variable(env, monkeypatch, capsys):
    monkeypatch.setenv("KILROY_EPOCHS", "many")
    assert main(["adapters", "list"]) == 2
    assert "KILROY_EPOCHS='many'" in capsys.readouterr().err


def test_adapters_use_bad_name(env, capsys):
    assert main(["adapters", "use", "../x"]) == 2
    assert "not a valid adapter name" in capsys.readouterr().err


@pytest.mark.slow
def test_generate_json(env, capsys):
    """`kilroy generate -n 3 --json` prints samples with text, adapter and token counts."""
    assert main(["generate", "-n", "3", "--json", "--seed", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["samples"]) == 3
    assert {"text", "adapter", "tokens"} <= set(out["samples"][0]) and out["samples"][0]["adapter"] == "base"


@pytest.mark.slow
def test_simulate_end_to_end_json_and_plot(env, tmp_path, capsys):
    """A short simulation runs the whole loop and writes the documented JSON and a PNG."""
    out, plot = tmp_path / "sim.json", tmp_path / "sim.png"
    sizes = ["--nights", "2", "--posts-per-night", "12", "--eval-samples", "16", "--seeds", "2"]
    code = main(["simulate", *sizes, "--json", str(out), "--plot", str(plot)])
    assert code == 0
    data = json.loads(out.read_text())
    assert [r["seed"] for r in data["runs"]] == [0, 1] and data["seeds"] == [0, 1]
    for run in data["runs"]:
        assert [n["night"] for n in run["nights"]] == [0, 1]
        for n in run["nights"]:
            assert isinstance(n["mean_score"], float) and n["posts"] == 12 and isinstance(n["adapter"], str)
            assert {"expected_score", "kl", "repeat3", "mean_tokens", "distinct2"} <= n.keys()
        assert run["nights"][0]["adapter"] == "base"
        first, last = run["nights"][0], run["nights"][-1]
        assert run["lift"] == pytest.approx(last["expected_score"] / first["expected_score"])
        assert run["lift_sampled"] == pytest.approx(run["final_mean_score"] / run["baseline_mean_score"])
    lo, hi = data["lift_ci"]
    assert lo <= data["lift"] <= hi
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert "95% CI" in capsys.readouterr().out


def test_one_seed_claims_no_interval(env, tmp_path, capsys):
    """A single seed has no spread: the summary says so instead of printing a zero-width 95% interval."""
    sizes = ["--nights", "1", "--posts-per-night", "8", "--eval-samples", "8"]
    assert main(["simulate", *sizes, "--workdir", str(tmp_path / "w")]) == 0
    printed = capsys.readouterr().out
    assert "one seed, no interval" in printed and "95% CI" not in printed


def test_simulate_bad_audience_file(env, tmp_path, capsys):
    bad = tmp_path / "a.json"
    bad.write_text('{"members": 0, "reaction_rate": 0.1, "likes": {}}')
    assert main(["simulate", "--audience-file", str(bad)]) == 2
    assert "members" in capsys.readouterr().err


@pytest.mark.slow
def test_story_pipes_three_lines(env):
    """Piping three lines into `kilroy story` prints three machine lines on stdout, nothing else."""
    proc = subprocess.run(
        [sys.executable, "-m", "bot", "story"],
        input="She opens the window.\nA bird flies in.\nThe cards are blank.\n",
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 3
    assert all(line.startswith("machine_director: ") and len(line) > len("machine_director: ") for line in lines)
    assert "Continue the story" in proc.stderr


def test_train_with_empty_database_says_so(env, capsys):
    """`kilroy train` on an empty database explains there is nothing to train and exits 0."""
    assert main(["train"]) == 0
    assert "nothing to train" in capsys.readouterr().out


@pytest.mark.slow
def test_train_cli_trains_and_reports(env, monkeypatch, capsys, tmp_path):
    """`kilroy train --json` over settled posts reports the new adapter and the gate's decision."""
    import asyncio

    from bot.config.settings import Settings
    from bot.storage import Storage
    from tests.support.data import seed_posts

    monkeypatch.setenv("KILROY_EPOCHS", "1")
    monkeypatch.setenv("KILROY_SETTLE_HOURS", "0")
    settings = Settings.from_env(dict(__import__("os").environ))

    async def fill():
        async with Storage.open(settings.db_path) as storage:
            await seed_posts(settings, storage, at=0.0)

    asyncio.run(fill())
    assert main(["train", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["event"] == "done" and out["adapter"] == "v0001" and isinstance(out["promoted"], bool)


@pytest.mark.slow
def test_simulate_isolated_matches_in_process(env, tmp_path, capsys):
    """Training each night in the worker process (the bot's path) gives the same nights as in-process training."""
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    common = ["simulate", "--nights", "2", "--posts-per-night", "12"]
    assert main([*common, "--json", str(a), "--workdir", str(tmp_path / "wa")]) == 0
    assert main([*common, "--json", str(b), "--workdir", str(tmp_path / "wb"), "--isolated"]) == 0
    nights_a = [(n["mean_score"], n["adapter"], n["promoted"]) for n in json.loads(a.read_text())["nights"]]
    nights_b = [(n["mean_score"], n["adapter"], n["promoted"]) for n in json.loads(b.read_text())["nights"]]
    assert nights_a == nights_b


def test_every_subcommand_help_stands_on_its_own(capsys):
    """Each subcommand has a description and a help text for every option; nothing points outside the repo."""
    from bot.cli.main import build_parser

    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(subs.choices) >= {
        "run",
        "simulate",
        "train",
        "generate",
        "adapters",
        "story",
        "backup",
        "restore",
        "doctor",
    }

    def check(name: str, sub: argparse.ArgumentParser) -> None:
        assert sub.description, name
        for action in sub._actions:
            assert action.help, f"{name} {action.dest}"
            if isinstance(action, argparse._SubParsersAction):  # nested: `kilroy adapters list`, ...
                for child, parser in action.choices.items():
                    check(f"{name} {child}", parser)
        text = sub.format_help()
        assert "DESIGN.md" not in text and "DEVELOPERS.md" not in text, name

    for name, sub in subs.choices.items():
        check(name, sub)


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.startswith("kilroy ")
