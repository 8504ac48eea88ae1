"""Every storage test here runs on both backends, SQLite and PostgreSQL (tests/conftest.py: `database`)."""

import pytest


@pytest.fixture
def storage(any_storage):
    return any_storage
