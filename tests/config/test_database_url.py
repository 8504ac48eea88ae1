"""KILROY_DATABASE_URL: PostgreSQL when set, the SQLite file when not; a bad URL is named, its password never shown."""

import pytest

from bot.config.env import ConfigError, Secret
from bot.config.settings import Settings


def test_unset_means_the_sqlite_file(make_settings, tmp_path):
    s = make_settings()
    assert s.database == tmp_path / "data" / "kilroy.db" and not s.database_url


def test_a_postgresql_url_is_the_database_and_its_password_is_never_shown(make_settings):
    url = "postgresql://kilroy:hunter2@db.example:5432/kilroy"
    s = make_settings(KILROY_DATABASE_URL=url)
    assert s.database == url
    assert "hunter2" not in repr(s) and "hunter2" not in str(s.to_json())
    assert s.database_shown == "postgresql://kilroy:***@db.example:5432/kilroy"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("mysql://kilroy:hunter2@db/kilroy", "scheme must be postgresql://"),
        ("postgresql://kilroy:hunter2@db:port/kilroy", "port must be a number"),
        ("postgresql://kilroy:hunter2@db:5432/", "name the database"),
        ("postgresql:///kilroy", "name the server"),
    ],
)
def test_a_bad_url_is_named_with_the_fix_and_without_the_password(make_settings, url, why):
    with pytest.raises(ConfigError) as err:
        make_settings(KILROY_DATABASE_URL=url)
    message = str(err.value)
    assert "KILROY_DATABASE_URL" in message and why in message and "postgresql://kilroy:PASSWORD@" in message
    assert "hunter2" not in message


def test_a_unix_socket_url_is_accepted(make_settings):
    url = "postgresql://kilroy@/kilroy?host=/run/postgresql"
    assert make_settings(KILROY_DATABASE_URL=url).database == url


def test_a_new_sqlite_path_leaves_postgresql(make_settings, tmp_path):
    """A simulation's scratch database (settings.replace(db_path=...)) never writes into the configured server."""
    s = make_settings(KILROY_DATABASE_URL="postgresql://kilroy@db/kilroy")
    assert s.replace(db_path=tmp_path / "sim.db").database == tmp_path / "sim.db"
    assert s.replace(database_url=Secret("")).database == s.db_path
    assert isinstance(Settings.from_json(s.to_json()).database_url, Secret)


def test_the_worker_gets_the_url_in_its_environment_only(make_settings):
    from bot.training.runner import child_env, database_env

    s = make_settings(KILROY_DATABASE_URL="postgresql://kilroy:hunter2@db/kilroy")
    env = child_env({"KILROY_DATABASE_URL": "x", "PATH": "/bin"}) | database_env(s)
    assert env["KILROY_DATABASE_URL"] == "postgresql://kilroy:hunter2@db/kilroy"
    assert database_env(make_settings()) == {}
