"""The PostgreSQL test server: without binaries it fails with the fix, never skips; each test's database is fresh."""

import pytest

from tests.support import postgres


def test_without_binaries_the_error_names_the_package(monkeypatch):
    monkeypatch.setenv("KILROY_TEST_PG_BIN", "/nonexistent")
    monkeypatch.setattr(postgres.shutil, "which", lambda name: None)
    monkeypatch.setattr(postgres.glob, "glob", lambda pattern: [])
    with pytest.raises(postgres.PostgresUnavailable, match="apt-get install postgresql"):
        postgres.find_bindir()


async def test_each_database_is_a_fresh_migrated_copy(postgres_server):
    import asyncpg

    from bot.storage import migrations

    latest = max(n for n, _ in migrations("postgresql"))
    first, second = postgres_server.new_database(), postgres_server.new_database()
    assert first != second
    for url in (first, second):
        con = await asyncpg.connect(url)
        try:
            assert await con.fetchval("SELECT version FROM kilroy_schema") == latest
            assert await con.fetchval("SELECT COUNT(*) FROM posts") == 0
        finally:
            await con.close()
