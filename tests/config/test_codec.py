"""The JSON codec: the training worker receives the caller's exact settings, secrets left out."""

import dataclasses
import json

import pytest

from bot.config import codec
from bot.config.settings import Secret, Settings


def test_safety_settings_travel_to_the_worker():
    """The safety section survives the JSON round trip the training worker uses."""
    s = Settings.from_env({"KILROY_MAX_QUEUE": "7", "KILROY_ALLOW_URLS": "true"})
    back = Settings.from_json(s.to_json())
    assert back.safety == s.safety


def test_settings_travel_whole_through_json_without_secrets():
    """What the training worker receives equals what the bot runs with, secrets left out."""
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


def test_json_round_trip_keeps_every_declared_value():
    """Every setting, set away from its default, comes back equal (the codec knows every kind of value)."""
    env = {
        "KILROY_LOG_CHANNEL_ID": "42",
        "KILROY_BLOCKLIST": "foo,bar",
        "KILROY_POST_PROMPT": "  a prompt ",
        "KILROY_LOG_LEVEL": "debug",
        "KILROY_TIMEZONE": "Europe/Paris",
        "KILROY_LORA_DROPOUT": "0.1",
        "KILROY_TOP_K": "7",
        "KILROY_REPEAT_PENALTY": "3",
    }
    settings = Settings.from_env(env)
    assert Settings.from_json(json.loads(json.dumps(settings.to_json()))) == settings


def test_unknown_keys_are_refused_and_missing_ones_default():
    with pytest.raises(ValueError, match="unknown settings: nope"):
        Settings.from_json({"training": {"nope": 1}})
    assert Settings.from_json({"training": {"kl_beta": 2}}).training.kl_beta == 2.0
    assert Settings.from_json({}) == Settings()
    assert codec.encode(Secret("x")) is None
