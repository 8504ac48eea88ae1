from bot.training.gate import GateConfig, decide

CFG = GateConfig(max_kl=0.5, min_diversity=0.6, min_base_diversity=0.6)


def test_promotes_healthy_candidate():
    d = decide({"kl": 0.1, "distinct2": 0.7, "loss": 0.3}, {"distinct2": 0.8}, CFG)
    assert d.accepted


def test_refuses_collapsed_adapter():
    """A candidate that repeats itself (distinct-2 collapsed) is kept out."""
    d = decide({"kl": 0.1, "distinct2": 0.2, "loss": 0.3}, {"distinct2": 0.8}, CFG)
    assert not d.accepted and "distinct-2" in d.reason


def test_refuses_drift_from_base():
    d = decide({"kl": 2.0, "distinct2": 0.8, "loss": 0.3}, {"distinct2": 0.8}, CFG)
    assert not d.accepted and "KL" in d.reason


def test_refuses_diverged_training():
    d = decide({"kl": 0.1, "distinct2": 0.8, "loss": float("nan")}, {"distinct2": 0.8}, CFG)
    assert not d.accepted and "diverged" in d.reason


def test_refuses_slow_collapse_relative_to_base():
    """Nightly steps each within the serving floor cannot compound below the base floor."""
    d = decide({"kl": 0.1, "distinct2": 0.4, "loss": 0.3, "base_distinct2": 0.8}, {"distinct2": 0.45}, CFG)
    assert not d.accepted and "base" in d.reason


def test_diversity_refusals_name_the_floor_and_the_figure_it_comes_from():
    """ "0.395 fell below 85% of the base model's (0.402)" read as if 0.395 were under 85% of 0.402: the reason says
    which number is the floor and which the base's (or the serving adapter's) own distinct-2."""
    cfg = GateConfig(max_kl=0.5, min_diversity=0.9, min_base_diversity=0.85)
    d = decide({"kl": 0.1, "distinct2": 0.395, "loss": 0.3, "base_distinct2": 0.473}, {"distinct2": 0.4}, cfg)
    assert not d.accepted
    assert "fell below 0.402" in d.reason and "85% of the base model's 0.473" in d.reason
    d = decide({"kl": 0.1, "distinct2": 0.3, "loss": 0.3}, {"distinct2": 0.5}, cfg)
    assert not d.accepted
    assert "fell below 0.450" in d.reason and "90% of the serving adapter's 0.500" in d.reason


HEALTHY = {"kl": 0.1, "distinct2": 0.7, "loss": 0.3, "base_distinct2": 0.7}
BASE_STYLE = {"base_repeat3": 0.06, "base_mean_tokens": 14.0}


def test_refuses_a_repetitive_candidate():
    """A candidate looping on a template (repeat3 up from 6% to 30%) is refused, though KL and distinct-2 pass."""
    d = decide({**HEALTHY, **BASE_STYLE, "repeat3": 0.30, "mean_tokens": 15.0}, {"distinct2": 0.7}, CFG)
    assert not d.accepted and "repeat3" in d.reason
    ok = decide({**HEALTHY, **BASE_STYLE, "repeat3": 0.08, "mean_tokens": 15.0}, {"distinct2": 0.7}, CFG)
    assert ok.accepted


def test_refuses_a_long_winded_candidate():
    d = decide({**HEALTHY, **BASE_STYLE, "repeat3": 0.06, "mean_tokens": 30.0}, {"distinct2": 0.7}, CFG)
    assert not d.accepted and "length" in d.reason


def test_length_and_repeat_bounds_are_configurable():
    loose = GateConfig(max_kl=0.5, max_repeat=10.0, max_length=3.0)
    d = decide({**HEALTHY, **BASE_STYLE, "repeat3": 0.30, "mean_tokens": 30.0}, {"distinct2": 0.7}, loose)
    assert d.accepted


def test_refuses_a_candidate_estimated_worse_than_serving():
    """The reward model's estimate on the same fresh draw: below the serving adapter's means no promotion."""
    worse = decide({**HEALTHY, "engagement": 0.05}, {"distinct2": 0.7, "engagement": 0.12}, CFG)
    assert not worse.accepted and "engagement" in worse.reason
    better = decide({**HEALTHY, "engagement": 0.15}, {"distinct2": 0.7, "engagement": 0.12}, CFG)
    assert better.accepted and "engagement" in better.reason
    tolerant = GateConfig(max_kl=0.5, min_engagement=-0.1)
    assert decide({**HEALTHY, "engagement": 0.05}, {"distinct2": 0.7, "engagement": 0.12}, tolerant).accepted


def test_gate_config_from_settings():
    from bot.config.settings import Settings
    from bot.training.gate import gate_config

    s = Settings.from_env({"KILROY_GATE_MAX_REPEAT": "2", "KILROY_GATE_MAX_LENGTH": "1.2"})
    cfg = gate_config(s.training)
    assert (cfg.max_repeat, cfg.max_length, cfg.min_engagement) == (2.0, 1.2, 0.0)
