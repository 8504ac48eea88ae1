"""Reading the declarations from the environment and `.env`: the parse rules each kind keeps."""

import dataclasses
import os
from pathlib import Path

import pytest

from bot.config.env import ConfigError, read, setting, walk
from bot.config.settings import DEFAULT_OPENING, Settings, load_settings


def test_blank_values_mean_the_default_and_values_are_stripped():
    s = Settings.from_env({"KILROY_EPOCHS": "  ", "KILROY_MODEL": "  tiny ", "KILROY_STORY_OPENING": ""})
    assert s.training.epochs == 1 and s.model.name == "tiny" and s.story.opening == DEFAULT_OPENING


def test_the_post_prompt_keeps_its_spaces():
    assert Settings.from_env({"KILROY_POST_PROMPT": " so, "}).generation.prompt == " so, "
    assert Settings.from_env({"KILROY_POST_PROMPT": ""}).generation.prompt == ""


def test_paths_and_the_derived_database_path():
    s = Settings.from_env({"KILROY_DATA_DIR": "/srv/k", "KILROY_BACKUP_DIR": "/srv/b"})
    assert (s.data_dir, s.db_path, s.ops.backup_dir) == (Path("/srv/k"), Path("/srv/k/kilroy.db"), Path("/srv/b"))
    assert Settings.from_env({"KILROY_DATA_DIR": "/srv/k", "KILROY_DB_PATH": "/x.db"}).db_path == Path("/x.db")
    assert Settings.from_env({}).ops.backup_dir is None


def test_single_id_level_port_and_custom_emoji():
    s = Settings.from_env(
        {
            "KILROY_LOG_CHANNEL_ID": "5, 6",
            "KILROY_LOG_LEVEL": "Warning",
            "KILROY_HTTP_PORT": "8080",
            "KILROY_EMOJI_WEIGHTS": "<a:party:12>=3",
        }
    )
    assert s.discord.log_channel_id == 5 and s.log_level == "WARNING" and s.ops.http_port == 8080
    assert s.scoring.emoji_weights == {"<:party:12>": 3.0}
    with pytest.raises(ConfigError, match=r"KILROY_HTTP_PORT='0' is not a TCP port \(1-65535\)"):
        Settings.from_env({"KILROY_HTTP_PORT": "0"})


def test_load_settings_reads_env_file_under_the_environment_without_touching_it(tmp_path, monkeypatch):
    env_file = tmp_path / ".env"
    env_file.write_text("KILROY_EPOCHS=3\nKILROY_BATCH_SIZE=4\nKILROY_SEED=5\n", encoding="utf-8")
    monkeypatch.setenv("KILROY_BATCH_SIZE", "8")
    s = load_settings(env_file, overrides={"KILROY_SEED": "9"})
    assert (s.training.epochs, s.training.batch_size, s.training.seed) == (3, 8, 9)
    assert "KILROY_EPOCHS" not in os.environ


def test_a_field_without_a_declaration_is_refused():
    """Every field of a settings class is a declaration (or a section), so nothing is read by hand."""

    @dataclasses.dataclass(frozen=True)
    class Loose:
        a: int = setting("KILROY_A", 1, lo=0, hi=2, help="a")
        b: int = 2

    with pytest.raises(TypeError, match=r"Loose\.b is neither a setting nor a section"):
        list(walk(Loose))
    with pytest.raises(TypeError, match=r"Loose\.b is neither a setting nor a section"):
        read(Loose, {})
