import datetime as dt
import re
from pathlib import Path

import pytest

from bot.config.settings import ConfigError, Settings

ROOT = Path(__file__).resolve().parents[2]


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


def test_env_example_documents_every_setting_with_its_default():
    """.env.example lists every variable the code reads, and its values parse to the defaults."""
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    values = dict(re.findall(r"^([A-Z_]+)=(.*)$", text, flags=re.M))
    code = (ROOT / "bot" / "config" / "settings.py").read_text(encoding="utf-8")
    used = set(re.findall(r'"((?:KILROY|DISCORD)_[A-Z_]+)"', code))
    assert used <= set(values), f"undocumented: {sorted(used - set(values))}"
    assert Settings.from_env(values) == Settings.from_env({})


# --- sanity bounds (issue 12): finite numbers, upper bounds, budgets that fit the model's context -----------------


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


def test_safety_settings_travel_to_the_worker():
    """The new section survives the JSON round trip the training worker uses."""
    s = Settings.from_env({"KILROY_MAX_QUEUE": "7", "KILROY_ALLOW_URLS": "true"})
    back = Settings.from_json(s.to_json())
    assert back.safety == s.safety


def test_settings_travel_whole_through_json_without_secrets():
    """What the training worker receives equals what the bot runs with, secrets left out."""
    import dataclasses
    import json

    from bot.config.settings import Secret, Settings

    env = {
        "DISCORD_TOKEN": "s3cr3t-discord",
        "KILROY_DASHBOARD_TOKEN": "s3cr3t-dashboard-token-long-enough-to-pass",
        "KILROY_KL_BETA": "0.5",
        "KILROY_SETTLE_HOURS": "2",
        "KILROY_GUILD_IDS": "1,2",
        "KILROY_EMOJI_WEIGHTS": "👎=-1,❤️=2",
        "KILROY_TRAIN_TIME": "04:15",
        "KILROY_BACKUP_DIR": "/srv/backups",
        "KILROY_HTTP_PORT": "8080",
        "KILROY_DATA_DIR": "/srv/data",
    }
    settings = Settings.from_env(env)
    text = json.dumps(settings.to_json())
    assert "s3cr3t" not in text
    back = Settings.from_json(json.loads(text))
    expected = dataclasses.replace(
        settings,
        discord=dataclasses.replace(settings.discord, token=Secret("")),
        ops=dataclasses.replace(settings.ops, dashboard_token=Secret("")),
    )
    assert back == expected
