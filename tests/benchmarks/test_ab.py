"""benchmarks/ab.py runs and writes the figures the issue names (a tiny budget here; the real run is the script)."""

import json

from benchmarks.ab import main


def test_ab_benchmark_writes_its_json(tmp_path, capsys):
    """--json writes the five figures; a tiny budget keeps this fast."""
    out = tmp_path / "ab.json"
    assert main(["--quick", "--trials", "20", "--max-posts", "100", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    for key in ("false_promotion_rate", "power_20", "median_posts_to_decision", "worse_promoted_rate", "trials"):
        assert isinstance(data[key], int | float), key
    assert data["trials"] == 1000 + 20 + 20 and 0 <= data["false_promotion_rate"] <= 0.1
