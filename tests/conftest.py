"""Shared fixtures: settings from a dict, a migrated storage, the tiny test model built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bot.adapters.store import AdapterStore
from bot.config.settings import Settings
from bot.storage import Storage

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing at test time touches a hub


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        cuda = False
    if not cuda:
        skip = pytest.mark.skip(reason="needs a CUDA GPU")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """The small offline GPT-2 ('test' preset), built once per session through the real builder."""
    from bot.engine.tiny import ensure_tiny

    cache = os.environ.get("KILROY_TEST_MODEL_CACHE")
    root = Path(cache) if cache else tmp_path_factory.mktemp("model")
    return ensure_tiny(root, "test")


@pytest.fixture
def make_settings(tmp_path):
    """Settings.from_env on a dict, with paths inside the test's tmp dir."""

    def make(**env: str) -> Settings:
        base = {
            "KILROY_DATA_DIR": str(tmp_path / "data"),
            "KILROY_ADAPTERS_DIR": str(tmp_path / "adapters"),
            "KILROY_MODEL": "gpt2",
            # a server's own lineage trains from its first settled posts: tests about training seed a handful; the
            # commons' wait for KILROY_COMMUNITY_MIN_POSTS is tested with its own value (tests/training/test_commons.py)
            "KILROY_COMMUNITY_MIN_POSTS": "0",
        }
        return Settings.from_env({**base, **env})

    return make


@pytest.fixture
def tiny_settings(make_settings, tiny_model_dir):
    """Settings that run the tiny model, with small training and gate budgets."""

    def make(**env: str) -> Settings:
        defaults = {"KILROY_MODEL": str(tiny_model_dir), "KILROY_GATE_SAMPLES": "8", "KILROY_MAX_NEW_TOKENS": "24"}
        # a handful of seeded posts rarely beats shuffled scores: tests train on whatever they seed
        defaults["KILROY_REWARD_MAX_P"] = "1"
        return make_settings(**{**defaults, **env})

    return make


@pytest.fixture(scope="session")
def postgres_server():
    """One real PostgreSQL server for the session (tests/support/postgres.py). If it cannot start, every test that
    needs it fails with the reason: never a silent skip."""
    from tests.support.postgres import PostgresUnavailable, start_server

    try:
        server = start_server()
    except PostgresUnavailable as exc:
        pytest.fail(f"PostgreSQL could not start: {exc}", pytrace=False)
    yield server
    server.stop()


BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def database(request, tmp_path) -> Path | str:
    """Where a storage test's database lives, once per backend: a SQLite file, or a fresh PostgreSQL database
    (migrated: a copy of the session's template). Tests that take it run on both backends."""
    if request.param == "sqlite":
        return tmp_path / "kilroy.db"
    server = request.getfixturevalue("postgres_server")
    url = server.new_database()
    request.addfinalizer(lambda: server.drop_database(url))
    return url


@pytest.fixture(params=BACKENDS)
def bare_database(request, tmp_path) -> Path | str:
    """As `database`, but not migrated: for tests of the migrations themselves."""
    if request.param == "sqlite":
        return tmp_path / "kilroy.db"
    server = request.getfixturevalue("postgres_server")
    url = server.new_database(migrated=False)
    request.addfinalizer(lambda: server.drop_database(url))
    return url


@pytest.fixture
def postgres_database(postgres_server) -> str:
    """A fresh, migrated PostgreSQL database's URL (PostgreSQL-only tests: the job queue, several processes)."""
    url = postgres_server.new_database()
    yield url
    postgres_server.drop_database(url)


@pytest.fixture
def backend(database) -> str:
    """'sqlite' or 'postgresql': the backend of this run of a test that takes `database`."""
    return "postgresql" if isinstance(database, str) else "sqlite"


@pytest.fixture
async def storage(tmp_path):
    """A migrated SQLite storage (tests/storage, tests/privacy and tests/ops override it to run on both backends)."""
    async with Storage.open(tmp_path / "kilroy.db") as s:
        yield s


@pytest.fixture
async def any_storage(database):
    """A migrated storage on each backend in turn."""
    async with Storage.open(database) as s:
        yield s


@pytest.fixture
def store(tmp_path) -> AdapterStore:
    return AdapterStore(tmp_path / "adapters")
