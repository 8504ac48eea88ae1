from bot.training.gate import GateConfig, decide
from bot.training.result import ArmMetrics, Evaluation

CFG = GateConfig(max_kl=0.5, min_diversity=0.6, min_base_diversity=0.6)


def evaluation(
    kl: float = 0.1,
    distinct2: float = 0.7,
    *,
    serving: float = 0.8,
    base: float = 0.0,
    repeat3: float = 0.0,
    base_repeat3: float = 0.0,
    tokens: float = 14.0,
    base_tokens: float = 14.0,
    engagement: float | None = None,
    serving_engagement: float | None = None,
) -> Evaluation:
    """The candidate's, the serving adapter's and the base's figures, healthy unless a test says otherwise."""
    return Evaluation(
        kl,
        candidate=ArmMetrics(distinct2, repeat3, tokens, engagement),
        serving=ArmMetrics(serving, 0.0, 14.0, serving_engagement),
        base=ArmMetrics(base, base_repeat3, base_tokens),
    )


def test_promotes_healthy_candidate():
    d = decide(evaluation(0.1, 0.7, serving=0.8), CFG, loss=0.3)
    assert d.accepted


def test_refuses_collapsed_adapter():
    """A candidate that repeats itself (distinct-2 collapsed) is kept out."""
    d = decide(evaluation(0.1, 0.2, serving=0.8), CFG, loss=0.3)
    assert not d.accepted and "distinct-2" in d.reason


def test_refuses_drift_from_base():
    d = decide(evaluation(2.0, 0.8, serving=0.8), CFG, loss=0.3)
    assert not d.accepted and "KL" in d.reason


def test_refuses_diverged_training():
    d = decide(evaluation(0.1, 0.8, serving=0.8), CFG, loss=float("nan"))
    assert not d.accepted and "diverged" in d.reason


def test_refuses_slow_collapse_relative_to_base():
    """Nightly steps each within the serving floor cannot compound below the base floor."""
    d = decide(evaluation(0.1, 0.4, serving=0.45, base=0.8), CFG, loss=0.3)
    assert not d.accepted and "base" in d.reason


def test_diversity_refusals_name_the_floor_and_the_figure_it_comes_from():
    """ "0.395 fell below 85% of the base model's (0.402)" read as if 0.395 were under 85% of 0.402: the reason says
    which number is the floor and which the base's (or the serving adapter's) own distinct-2."""
    cfg = GateConfig(max_kl=0.5, min_diversity=0.9, min_base_diversity=0.85)
    d = decide(evaluation(0.1, 0.395, serving=0.4, base=0.473), cfg, loss=0.3)
    assert not d.accepted
    assert "fell below 0.402" in d.reason and "85% of the base model's 0.473" in d.reason
    d = decide(evaluation(0.1, 0.3, serving=0.5), cfg, loss=0.3)
    assert not d.accepted
    assert "fell below 0.450" in d.reason and "90% of the serving adapter's 0.500" in d.reason


HEALTHY = {"kl": 0.1, "distinct2": 0.7, "serving": 0.7, "base": 0.7}
BASE_STYLE = {"base_repeat3": 0.06, "base_tokens": 14.0}


def test_refuses_a_repetitive_candidate():
    """A candidate looping on a template (repeat3 up from 6% to 30%) is refused, though KL and distinct-2 pass."""
    d = decide(evaluation(**HEALTHY, **BASE_STYLE, repeat3=0.30, tokens=15.0), CFG, loss=0.3)
    assert not d.accepted and "repeat3" in d.reason
    ok = decide(evaluation(**HEALTHY, **BASE_STYLE, repeat3=0.08, tokens=15.0), CFG, loss=0.3)
    assert ok.accepted


def test_refuses_a_long_winded_candidate():
    d = decide(evaluation(**HEALTHY, **BASE_STYLE, repeat3=0.06, tokens=30.0), CFG, loss=0.3)
    assert not d.accepted and "length" in d.reason


def test_length_and_repeat_bounds_are_configurable():
    loose = GateConfig(max_kl=0.5, max_repeat=10.0, max_length=3.0)
    d = decide(evaluation(**HEALTHY, **BASE_STYLE, repeat3=0.30, tokens=30.0), loose, loss=0.3)
    assert d.accepted


def test_refuses_a_candidate_estimated_worse_than_serving():
    """The reward model's estimate on the same fresh draw: below the serving adapter's means no promotion."""
    worse = decide(evaluation(**HEALTHY, engagement=0.05, serving_engagement=0.12), CFG, loss=0.3)
    assert not worse.accepted and "engagement" in worse.reason
    better = decide(evaluation(**HEALTHY, engagement=0.15, serving_engagement=0.12), CFG, loss=0.3)
    assert better.accepted and "engagement" in better.reason
    tolerant = GateConfig(max_kl=0.5, min_engagement=-0.1)
    assert decide(evaluation(**HEALTHY, engagement=0.05, serving_engagement=0.12), tolerant, loss=0.3).accepted


def test_the_engagement_check_needs_both_estimates():
    """Without a reward model (no estimates) the engagement check is skipped, as is one with a single estimate."""
    assert decide(evaluation(**HEALTHY, engagement=-0.5), CFG, loss=0.3).accepted


def test_evaluation_flattens_to_the_stored_metric_names():
    """meta.json and training_runs.metrics keep their flat keys: the candidate's unprefixed, the others prefixed."""
    flat = evaluation(0.2, 0.6, serving=0.7, base=0.8, engagement=0.1, serving_engagement=0.05).as_metrics()
    assert flat["kl"] == 0.2 and flat["distinct2"] == 0.6 and flat["engagement"] == 0.1
    assert flat["serving_distinct2"] == 0.7 and flat["serving_engagement"] == 0.05 and flat["base_distinct2"] == 0.8
    assert "base_engagement" not in flat and flat["base_mean_tokens"] == 14.0


def test_gate_config_from_settings():
    from bot.config.settings import Settings
    from bot.training.gate import gate_config

    s = Settings.from_env({"KILROY_GATE_MAX_REPEAT": "2", "KILROY_GATE_MAX_LENGTH": "1.2"})
    cfg = gate_config(s.training)
    assert (cfg.max_repeat, cfg.max_length, cfg.min_engagement) == (2.0, 1.2, 0.0)


def test_gate_defaults_are_the_declared_ones():
    """The gate reads its defaults from the settings' declarations, so the two cannot drift apart."""
    from bot.config.settings import Settings
    from bot.training.gate import gate_config

    assert GateConfig() == gate_config(Settings().training)
