import datetime as dt
import re
from pathlib import Path

import pytest

from bot.config import ConfigError, Settings

ROOT = Path(__file__).resolve().parents[1]


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
    code = (ROOT / "bot" / "config.py").read_text(encoding="utf-8")
    used = set(re.findall(r'"((?:KILROY|DISCORD)_[A-Z_]+)"', code))
    assert used <= set(values), f"undocumented: {sorted(used - set(values))}"
    assert Settings.from_env(values) == Settings.from_env({})
