"""`.env.example` is written from the declarations: a declaration and the file cannot disagree."""

import re
from pathlib import Path

from bot.config.env import declarations
from bot.config.example import render
from bot.config.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_env_example_is_the_one_written_from_the_declarations():
    """Any difference in a name, a default or a help text fails here; the fix is in the message."""
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    assert text == render(), "run: python -m bot.config.example > .env.example"


def test_env_example_lists_every_setting_and_its_values_parse_to_the_defaults():
    text = render()
    values = dict(re.findall(r"^([A-Z_]+)=(.*)$", text, flags=re.M))
    assert list(values) == [spec.env for _, _, spec in declarations(Settings)]
    assert Settings.from_env(values) == Settings.from_env({}) == Settings()


def test_each_setting_has_its_help_above_it_and_numbers_their_range():
    lines = render().splitlines()
    at = lines.index("KILROY_KL_BETA=0.1")
    assert lines[at - 1] == "# Weight of the KL penalty that anchors the adapter to the base model. Between 0 and 100."
    assert "# --- Training " in "\n".join(lines[: lines.index("KILROY_OBJECTIVE=reinforce")])
    assert all(len(line) <= 118 for line in lines)


def test_secrets_never_show_a_value():
    assert "DISCORD_TOKEN=\n" in render() and "KILROY_DASHBOARD_TOKEN=\n" in render()
