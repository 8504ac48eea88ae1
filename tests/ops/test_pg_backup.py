"""Backups of a PostgreSQL install: pg_dump into the backup folder, checked before it counts, verified like any
backup, restorable with pg_restore, and put back by `kilroy restore` with the forgets re-applied."""

import asyncio
import json
import shutil
import subprocess

import asyncpg
import pytest

from bot.config.settings import Settings
from bot.ops.backup import BackupError, DamagedDatabase, backup, verify
from bot.ops.pg_backup import DUMP_NAME, restore_dump, tool
from bot.ops.restore import pending, recover, restore
from bot.storage import NewPost, Storage
from tests.storage.test_privacy import M, seed
from tests.support.storage import rows_holding


def settings_for(url: str, root) -> Settings:
    return Settings.from_env(
        {"KILROY_DATA_DIR": str(root / "data"), "KILROY_ADAPTERS_DIR": str(root / "adapters"),
         "KILROY_MODEL": "gpt2", "KILROY_DATABASE_URL": url}
    )  # fmt: skip


@pytest.fixture(scope="module")
def taken(postgres_server, tmp_path_factory):
    """One backup for the module (a seeded database, pg_dump'd): (its settings, the backup folder)."""
    url = postgres_server.new_database()

    async def fill() -> None:
        async with Storage.open(url) as storage:
            await seed(storage)

    asyncio.run(fill())
    root = tmp_path_factory.mktemp("pg-backup")
    settings = settings_for(url, root)
    backup(settings, root / "b")
    return settings, root / "b"


@pytest.fixture
def pg_install(taken, postgres_server, tmp_path):
    """An install on another copy of the same database (one lineage, one privacy key), to restore into."""
    url = postgres_server.new_database()
    restore_dump(url, taken[1] / DUMP_NAME)
    return settings_for(url, tmp_path)


async def counts(url: str) -> dict[str, int]:
    con = await asyncpg.connect(url)
    try:
        tables = [r[0] for r in await con.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        return {t: await con.fetchval(f"SELECT COUNT(*) FROM {t}") for t in sorted(tables)}
    finally:
        await con.close()


async def test_a_backup_holds_a_checked_dump_and_restores_with_pg_restore(pg_install, postgres_server, tmp_path):
    result = backup(pg_install, tmp_path / "b")  # this one timed: the module's backup is shared
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["database"] == "postgresql" and manifest["posts"] == 3 and manifest["integrity"] == "ok"
    assert DUMP_NAME in manifest["files"] and "kilroy.db" not in manifest["files"]
    assert (tmp_path / "b" / DUMP_NAME).stat().st_mode & 0o777 == 0o600 and result.files == 2
    assert verify(tmp_path / "b")["schema_version"] == manifest["schema_version"] >= 8
    fresh = postgres_server.new_database(migrated=False)
    await asyncio.to_thread(
        subprocess.run,
        [tool("pg_restore"), "--clean", "--if-exists", "--single-transaction", "--no-owner", f"--dbname={fresh}",
         str(tmp_path / "b" / DUMP_NAME)],
        check=True, capture_output=True,
    )  # fmt: skip
    assert await counts(fresh) == await counts(pg_install.database_url.get())
    async with Storage.open(fresh) as storage:  # the restored database opens at its schema and serves
        assert len(await storage.post_records()) == 3


def test_a_damaged_dump_is_refused_by_verify(taken, tmp_path):
    shutil.copytree(taken[1], tmp_path / "b")
    dump = tmp_path / "b" / DUMP_NAME
    dump.write_bytes(dump.read_bytes()[:200])
    with pytest.raises(BackupError, match="checksum differs"):
        verify(tmp_path / "b")


async def test_restore_puts_the_dump_back_and_forgets_again(pg_install, taken):
    """`kilroy restore` of a PostgreSQL backup: the database is the backup's, and a member who used /forget-me
    after the backup was taken is forgotten again (their opt-out carried)."""
    url = pg_install.database_url.get()
    async with Storage.open(url) as storage:
        await storage.forget_member(M, at=20.0)
        await storage.add_post(NewPost(1, "after the backup", "base", 30.0, message_id=99))
    manifest = await asyncio.to_thread(restore, pg_install, taken[1])
    assert manifest["opt_outs"]["members forgotten"] == 1 and manifest["opt_outs"]["opt-outs carried"] == 1
    assert await rows_holding(url, [M, "My secret"]) == []
    async with Storage.open(url) as storage:
        assert storage.is_opted_out(M)
        assert sorted(r.post.message_id for r in await storage.post_records()) == [1]  # 99 is gone; 2, 3 redacted


async def test_a_restore_killed_after_its_journal_is_finished_at_the_next_start(pg_install, taken):
    url = pg_install.database_url.get()
    async with Storage.open(url) as storage:
        await storage.forget_member(M, at=20.0)

    def crash(step: str) -> None:
        if step == "database replaced":
            raise KeyboardInterrupt  # killed after the replace, before the forget was re-applied

    with pytest.raises(KeyboardInterrupt):
        await asyncio.to_thread(restore, pg_install, taken[1], on_step=crash)
    assert await rows_holding(url, [M])  # the backup's rows are back: the window the journal closes
    assert "interrupted restore" in (pending(pg_install) or "")
    assert "finished an interrupted restore" in await asyncio.to_thread(recover, pg_install)
    assert await rows_holding(url, [M, "My secret"]) == [] and pending(pg_install) is None


async def test_restore_refuses_while_another_client_is_connected(pg_install, taken):
    other = await asyncpg.connect(pg_install.database_url.get())
    try:
        with pytest.raises(BackupError, match="other connection"):
            await asyncio.to_thread(restore, pg_install, taken[1])
    finally:
        await other.close()


def test_backups_restore_only_into_their_own_kind_of_database(taken, make_settings):
    with pytest.raises(BackupError, match="set KILROY_DATABASE_URL"):
        restore(make_settings(), taken[1])


def test_an_unreachable_server_writes_nothing_and_hides_the_password(make_settings, tmp_path):
    settings = make_settings(KILROY_DATABASE_URL="postgresql://kilroy:hunter2@127.0.0.1:1/kilroy")
    with pytest.raises(DamagedDatabase) as err:
        backup(settings, tmp_path / "b")
    assert "hunter2" not in str(err.value) and "pg_dump failed" in str(err.value)
    assert not (tmp_path / "b").exists() and not list(tmp_path.glob(".b*"))
