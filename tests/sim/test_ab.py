"""`kilroy simulate --ab`: the live trial procedure in the simulated community."""

import json

import pytest

from bot.cli.main import main
from tests.cli.test_main import env  # noqa: F401 - fixture


@pytest.mark.slow
def test_simulate_ab_json_has_trials(env, tmp_path, capsys):  # noqa: F811
    """Nights carry their trial (arm counts, decision); the summary counts outcomes against expected scores."""
    out = tmp_path / "ab.json"
    plot = tmp_path / "ab.png"
    code = main(
        [
            "simulate",
            "--ab",
            "--nights",
            "3",
            "--posts-per-night",
            "16",
            "--json",
            str(out),
            "--plot",
            str(plot),
            "--workdir",
            str(tmp_path / "w"),
        ]
    )
    assert code == 0 and plot.stat().st_size > 0
    data = json.loads(out.read_text())
    assert len(data["nights"]) == 3 and data["nights"][0]["trial"] is None
    summary = data["trial_summary"]
    assert summary["trials"] == len(data["trials"])
    assert summary["mode"] == "guard"  # the default: every gate-passing candidate serves at once
    assert summary["rolled_back"] + summary["confirmed"] + summary["no_harm_shown"] + summary["guarding"] == len(
        data["trials"]
    )
    for night in data["nights"]:
        if night["trial"]:
            assert sum(night["trial"]["arms"].values()) == night["posts"] == 16
    if data["trials"]:  # the gate passed night 0's candidate: night 1 is split between the arms
        assert data["nights"][1]["trial"]["id"] == data["trials"][0]["id"]
        assert set(data["trials"][0]["expected"]) == {data["trials"][0]["candidate"], "base"}
    assert "guard(s) started" in data["note"] and "guard(s) started" in capsys.readouterr().out
