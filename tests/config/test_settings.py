import dataclasses
import datetime as dt
import typing
from pathlib import Path

import pytest

from bot.config.env import INTEGER, NUMBER, SPEC, declarations, setting
from bot.config.settings import ConfigError, Settings


def test_defaults_when_nothing_is_set():
    """An empty environment is valid and gives the documented defaults."""
    s = Settings.from_env({})
    assert s.model.name == "gpt2"
    assert s.model.quantization == "auto"
    assert s.db_path == Path("data/kilroy.db")
    assert s.training.train_time == dt.time(3, 30)
    assert not s.discord.token


def test_db_path_follows_data_dir():
    """KILROY_DB_PATH defaults to <KILROY_DATA_DIR>/kilroy.db."""
    assert Settings.from_env({"KILROY_DATA_DIR": "/tmp/x"}).db_path == Path("/tmp/x/kilroy.db")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("KILROY_LEARNING_RATE", "fast"),
        ("KILROY_QUANTIZATION", "3bit"),
        ("KILROY_POST_CHANNEL_IDS", "general"),
        ("KILROY_TRAIN_TIME", "25:00"),
        ("KILROY_TIMEZONE", "Mars/Olympus"),
        ("KILROY_TOP_P", "2"),
        ("KILROY_EPOCHS", "0"),
        ("KILROY_EMOJI_WEIGHTS", "👎:-1"),
    ],
)
def test_invalid_value_names_variable_value_and_fix(name, value):
    """Each bad value fails with the variable, the value and an example fix."""
    with pytest.raises(ConfigError) as info:
        Settings.from_env({name: value})
    message = str(info.value)
    assert name in message
    assert repr(value) in message
    assert "set it to e.g." in message


def test_all_problems_reported_together():
    """Several bad variables are listed in one error."""
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"KILROY_EPOCHS": "x", "KILROY_TOP_K": "y"})
    assert len(info.value.problems) == 2


def test_token_never_shown():
    """The token is kept but never appears in a repr."""
    s = Settings.from_env({"DISCORD_TOKEN": "secret-token-value"})
    assert s.discord.token.get() == "secret-token-value"
    assert "secret-token-value" not in repr(s)
    assert "secret-token-value" not in str(s.discord)


def test_lists_and_weights_parse():
    """Id lists and emoji weights parse from their text forms."""
    s = Settings.from_env(
        {"KILROY_POST_CHANNEL_IDS": "1, 2,3", "KILROY_EMOJI_WEIGHTS": "👎=-1,❤️=2", "KILROY_BLOCKLIST": "Foo, bar"}
    )
    assert s.discord.post_channel_ids == (1, 2, 3)
    assert s.scoring.emoji_weights == {"👎": -1.0, "❤️": 2.0}
    assert s.discord.blocklist == ("foo", "bar")


# --- sanity bounds: finite numbers, upper bounds, budgets that fit the model's context -----------------


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("KILROY_KL_BETA", "inf", "finite"),
        ("KILROY_KL_BETA", "nan", "finite"),
        ("KILROY_KL_BETA", "1000", "between 0 and 100"),
        ("KILROY_LEARNING_RATE", "-inf", "finite"),
        ("KILROY_REPLY_WEIGHT", "1e308", "between"),
        ("KILROY_DEFAULT_EMOJI_WEIGHT", "inf", "finite"),
        ("KILROY_EMOJI_WEIGHTS", "👍=inf", "finite"),
        ("KILROY_EMOJI_WEIGHTS", "👍=1000", "between"),
        ("KILROY_POST_INTERVAL_MINUTES", "0.01", "between 1 and"),
        ("KILROY_POST_INTERVAL_MINUTES", "1e9", "between 1 and"),
        ("KILROY_SETTLE_HOURS", "100000", "between 0 and"),
        ("KILROY_MAX_NEW_TOKENS", "5000", "between 1 and 1024"),
        ("KILROY_STORY_MAX_NEW_TOKENS", "5000", "between 1 and 1024"),
        ("KILROY_EPOCHS", "1000000", "between 1 and 100"),
        ("KILROY_BATCH_SIZE", "100000", "between 1 and"),
        ("KILROY_LORA_RANK", "100000", "between 1 and 256"),
        ("KILROY_STORY_MAX_LINE_CHARS", "5000", "between 1 and 1500"),
        ("KILROY_STORY_COOLDOWN_SECONDS", "inf", "finite"),
        ("KILROY_STORY_RETRIES", "1000", "between 1 and 10"),
        ("KILROY_GATE_SAMPLES", "10000000", "between 2 and"),
        ("KILROY_SEED", "-1", "between 0 and"),
        ("KILROY_COMMAND_COOLDOWN_SECONDS", "-1", "between 0 and"),
        ("KILROY_MAX_QUEUE", "0", "between 1 and"),
        ("KILROY_RETENTION_DAYS", "-5", "between 0 and"),
        ("KILROY_ALLOW_URLS", "maybe", "true or false"),
        ("KILROY_LEAVE_OTHER_GUILDS", "2", "true or false"),
    ],
)
def test_each_bound_names_variable_and_fix(name, value, says):
    """Infinite, NaN and out-of-range values are refused with the variable, the value, the rule and a fix."""
    with pytest.raises(ConfigError) as info:
        Settings.from_env({name: value})
    (problem,) = info.value.problems
    assert name in problem and repr(value) in problem and says in problem and "set it to e.g." in problem


def test_bounds_accept_their_edges():
    s = Settings.from_env(
        {
            "KILROY_POST_INTERVAL_MINUTES": "1",
            "KILROY_KL_BETA": "100",
            "KILROY_MAX_QUEUE": "1",
            "KILROY_RETENTION_DAYS": "0",
            "KILROY_ALLOW_URLS": "yes",
        }
    )
    assert s.discord.post_interval_minutes == 1 and s.training.kl_beta == 100 and s.safety.max_queue == 1
    assert s.safety.retention_days == 0 and s.safety.allow_urls is True


def test_max_new_tokens_must_leave_room_for_a_prompt():
    """KILROY_MAX_NEW_TOKENS above the model's context minus a minimum prompt is refused once the context is known
    (it used to cut the prompt silently to one token)."""
    from bot.config.settings import MIN_PROMPT_TOKENS

    s = Settings.from_env({"KILROY_MAX_NEW_TOKENS": "250", "KILROY_STORY_MAX_NEW_TOKENS": "40"})
    with pytest.raises(ConfigError) as info:
        s.check_context(256)
    (problem,) = info.value.problems
    assert "KILROY_MAX_NEW_TOKENS=250" in problem and f"at most {256 - MIN_PROMPT_TOKENS}" in problem
    s.check_context(1024)  # fits GPT-2's context


# --- each setting declared once, every number bounded -------------------------------------------------------------

NUMERIC = [(spec.env, spec) for _, _, spec in declarations(Settings) if spec.kind.numeric]


def _text(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def test_every_variable_is_declared_once():
    names = [spec.env for _, _, spec in declarations(Settings)]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    assert all(n == "DISCORD_TOKEN" or n.startswith("KILROY_") for n in names)


def test_every_declaration_has_help_and_a_kind_that_fits_its_field():
    """A float field is read as a number, an int as a whole number (a default written `60` for a float is caught)."""
    for cls in {type(getattr(Settings(), f.name)) for f in dataclasses.fields(Settings)} | {Settings}:
        if not dataclasses.is_dataclass(cls):
            continue
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            spec = f.metadata.get(SPEC)
            if spec is None:
                continue
            assert spec.help.strip(), f"{spec.env} has no help"
            if spec.kind is NUMBER:
                assert hints[f.name] is float, spec.env
            if spec.kind is INTEGER:
                assert int in typing.get_args(hints[f.name]) or hints[f.name] is int, spec.env


@pytest.mark.parametrize(("name", "spec"), NUMERIC, ids=[n for n, _ in NUMERIC])
def test_every_number_is_refused_past_its_bounds_naming_the_variable(name, spec):
    """Every numeric setting has both bounds: above the highest (and below the lowest) it is refused, the error
    naming the variable, the value and the range; the bounds themselves are accepted."""
    above = _text(spec.hi * 10 + 1) if spec.hi > 0 else "1"
    below = _text(spec.lo - 1 if spec.lo <= 0 else spec.lo / 2) if spec.kind is NUMBER else _text(spec.lo - 1)
    for value in (above, below, "1e308" if spec.kind is NUMBER else "10" * 12):
        with pytest.raises(ConfigError) as info:
            Settings.from_env({name: value})
        (problem,) = info.value.problems
        assert problem.startswith(f"{name}={value!r}") and f"between {spec.lo} and {spec.hi}" in problem, problem
    Settings.from_env({name: _text(spec.lo)})
    Settings.from_env({name: _text(spec.hi)})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("KILROY_REWARD_SAMPLES", "100000000000000000000000"),
        ("KILROY_REPEAT_PENALTY", "1e308"),
        ("KILROY_UNLIKELIHOOD", "1e308"),
        ("KILROY_GATE_MAX_REPEAT", "1e308"),
        ("KILROY_GATE_MAX_LENGTH", "1e308"),
        ("KILROY_AB_MAX_POSTS", "100000000000000000000000"),
        ("KILROY_BACKUP_KEEP", "100000000000000000000000"),
        ("KILROY_GATE_MIN_ENGAGEMENT", "1e308"),
        ("KILROY_GATE_MIN_ENGAGEMENT", "-1e308"),
        ("KILROY_GATE_MIN_ENGAGEMENT", "2"),
    ],
)
def test_absurd_values_once_accepted_are_refused(name, value):
    """Settings that had no upper bound (or, for the engagement margin, no lower one) refuse absurd values."""
    with pytest.raises(ConfigError) as info:
        Settings.from_env({name: value})
    (problem,) = info.value.problems
    assert name in problem and repr(value) in problem and "between" in problem and "set it to e.g." in problem


def test_the_tests_open_gate_stays_valid():
    """The open gate the test fixtures and operators use (max multipliers 100, engagement margin -100) still reads."""
    from tests.support.data import OPEN_GATE

    t = Settings.from_env(OPEN_GATE).training
    assert (t.gate_max_repeat, t.gate_max_length, t.gate_min_engagement) == (100, 100, -100)


def test_a_number_cannot_be_declared_without_both_bounds():
    with pytest.raises(TypeError, match="both bounds"):
        setting("KILROY_X", 1.0, hi=2, help="x")
    with pytest.raises(TypeError, match="both bounds"):
        setting("KILROY_X", 1, lo=0, help="x")
