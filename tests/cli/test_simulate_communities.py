import json

import pytest

from bot.cli.main import main
from tests.cli.test_main import env  # noqa: F401  (the fixture)


def test_simulate_communities_refuses_an_unknown_audience(env, capsys):  # noqa: F811
    assert main(["simulate", "--communities", "cat_people,nobody"]) == 2
    assert "unknown audience 'nobody'" in capsys.readouterr().err


@pytest.mark.slow
def test_simulate_communities_reports_each_servers_lift_with_its_interval(env, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "c.json"
    sizes = ["--nights", "2", "--posts-per-night", "8", "--eval-samples", "8", "--seeds", "2"]
    assert main(["simulate", "--communities", "cat_people,stargazers", *sizes, "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["mode"] == "commons" and data["seeds"] == [0, 1]
    assert [c["audience"] for c in data["communities"]] == ["cat_people", "stargazers"]
    for c in data["communities"]:
        assert c["lift_ci"][0] <= c["lift"] <= c["lift_ci"][1] and len(c["lifts"]) == 2
    printed = capsys.readouterr().out
    assert "g101" in printed and "g102" in printed and "95% CI" in printed
