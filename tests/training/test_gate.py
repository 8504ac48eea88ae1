from bot.training.gate import GateConfig, decide

CFG = GateConfig(max_kl=0.5, min_diversity=0.6, min_base_diversity=0.6)


def test_promotes_healthy_candidate():
    d = decide({"kl": 0.1, "distinct2": 0.7, "loss": 0.3}, {"distinct2": 0.8}, CFG)
    assert d.promote


def test_refuses_collapsed_adapter():
    """A candidate that repeats itself (distinct-2 collapsed) is kept out."""
    d = decide({"kl": 0.1, "distinct2": 0.2, "loss": 0.3}, {"distinct2": 0.8}, CFG)
    assert not d.promote and "distinct-2" in d.reason


def test_refuses_drift_from_base():
    d = decide({"kl": 2.0, "distinct2": 0.8, "loss": 0.3}, {"distinct2": 0.8}, CFG)
    assert not d.promote and "KL" in d.reason


def test_refuses_diverged_training():
    d = decide({"kl": 0.1, "distinct2": 0.8, "loss": float("nan")}, {"distinct2": 0.8}, CFG)
    assert not d.promote and "diverged" in d.reason


def test_refuses_slow_collapse_relative_to_base():
    """Nightly steps each within the serving floor cannot compound below the base floor."""
    d = decide({"kl": 0.1, "distinct2": 0.4, "loss": 0.3, "base_distinct2": 0.8}, {"distinct2": 0.45}, CFG)
    assert not d.promote and "base" in d.reason
