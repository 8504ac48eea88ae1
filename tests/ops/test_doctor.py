"""`kilroy doctor`: each check names its problem and fix; the exit status is 0 only when all pass; no traceback."""

from __future__ import annotations

import json
import os
import socket
import sqlite3

import pytest

from bot.cli.main import main
from bot.ops import doctor
from tests.support.adapters import fake_adapter


@pytest.fixture
def env_file(tmp_path, tiny_model_dir):
    def write(**values: str):
        base = {
            "DISCORD_TOKEN": "token-value-that-must-not-show",
            "KILROY_DATA_DIR": str(tmp_path / "data"),
            "KILROY_ADAPTERS_DIR": str(tmp_path / "adapters"),
            "KILROY_MODEL": str(tiny_model_dir),
        }
        path = tmp_path / "doctor.env"
        path.write_text("".join(f"{k}={v}\n" for k, v in {**base, **values}.items()))
        return str(path)

    return write


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for k in list(os.environ):
        if k.startswith("KILROY_") or k == "DISCORD_TOKEN":
            monkeypatch.delenv(k)


def by_name(checks):
    return {c.name: c for c in checks}


def test_a_good_setup_passes_every_check(env_file, capsys):
    checks = by_name(doctor.run_checks(env_file()))
    failing = {n: c.detail for n, c in checks.items() if not c.ok and n != "free disk"}
    assert failing == {}
    assert "token-value" not in json.dumps([c.detail for c in checks.values()])


def test_bad_setting_is_named_and_other_checks_still_run(env_file):
    checks = by_name(doctor.run_checks(env_file(KILROY_TEMPERATURE="hot")))
    assert not checks["settings"].ok and "KILROY_TEMPERATURE" in checks["settings"].detail
    assert checks["database"].ok and checks["model"].ok  # the rest ran on the settings that did parse


def test_missing_token_and_uncached_hub_model(env_file, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    checks = by_name(doctor.run_checks(env_file(DISCORD_TOKEN="", KILROY_MODEL="gpt2")))
    assert not checks["discord token"].ok and "DISCORD_TOKEN" in checks["discord token"].fix
    assert (
        not checks["model"].ok and "not cached" in checks["model"].detail and "kilroy generate" in checks["model"].fix
    )


def test_corrupt_adapter_and_dangling_pointer(env_file, tmp_path):
    fake_adapter(tmp_path / "adapters", "v0001")
    (tmp_path / "adapters" / "v0001" / "adapter_model.safetensors").write_bytes(b"\x05\x00")
    (tmp_path / "adapters" / "STATE.json").write_text(json.dumps({"current": "v0002", "history": []}))
    check = by_name(doctor.run_checks(env_file()))["adapters"]
    assert not check.ok and "v0001" in check.detail and "v0002" in check.detail and check.fix


def test_unwritable_data_folder(env_file, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the data folder should be")
    check = by_name(doctor.run_checks(env_file(KILROY_DATA_DIR=str(blocker / "data"))))["data folder"]
    assert not check.ok and "not writable" in check.detail and "KILROY_DATA_DIR" in check.fix


def test_corrupt_database(env_file, tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "kilroy.db").write_bytes(b"this is not sqlite" * 300)
    check = by_name(doctor.run_checks(env_file()))["database"]
    assert not check.ok and "kilroy restore" in check.fix


def test_database_schema_reported(env_file, tmp_path):
    (tmp_path / "data").mkdir()
    sqlite3.connect(tmp_path / "data" / "kilroy.db").execute("PRAGMA user_version = 1").connection.close()
    check = by_name(doctor.run_checks(env_file()))["database"]
    assert check.ok and "apply at the next start" in check.detail


def test_http_port_taken(env_file):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        check = by_name(doctor.run_checks(env_file(KILROY_HTTP_PORT=str(port))))["http port"]
    assert not check.ok and "taken" in check.detail


def test_a_crashing_check_is_a_failed_check(env_file, monkeypatch):
    def boom(settings):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(doctor, "CHECKS", (boom,))
    checks = doctor.run_checks(env_file())
    assert checks[-1].name == "boom" and not checks[-1].ok and "kaboom" in checks[-1].detail


def test_cli_exit_status_json_and_no_traceback(env_file, capsys, tmp_path):
    bad = env_file(KILROY_TEMPERATURE="hot", DISCORD_TOKEN="")
    assert main(["--env-file", bad, "doctor"]) == 1
    out = capsys.readouterr()
    assert "✗ settings" in out.out and "Traceback" not in out.out + out.err and "fix:" in out.out
    assert main(["--env-file", bad, "doctor", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is False and {c["name"] for c in data["checks"]} >= {"settings", "database", "adapters", "model"}


def test_backup_folder_permissions_reported(env_file, tmp_path):
    """Issue 23, item 5: the doctor reports the backup folder's permissions, and fails it when others can read."""
    root = tmp_path / "backups"
    checks = by_name(doctor.run_checks(env_file(KILROY_BACKUP_DIR=str(root))))
    assert checks["backups"].ok and "does not exist yet" in checks["backups"].detail
    (root / "nightly-20260101T000000Z").mkdir(parents=True, mode=0o700)
    os.chmod(root, 0o700)
    checks = by_name(doctor.run_checks(env_file(KILROY_BACKUP_DIR=str(root))))
    assert checks["backups"].ok and "mode 0700" in checks["backups"].detail
    os.chmod(root, 0o755)
    checks = by_name(doctor.run_checks(env_file(KILROY_BACKUP_DIR=str(root))))
    assert not checks["backups"].ok and "0755" in checks["backups"].detail and "chmod" in checks["backups"].fix


def test_quantization_line_says_what_was_chosen_and_why(env_file, monkeypatch):
    """The torch line names the bitsandbytes version, what KILROY_QUANTIZATION resolves to here, and the reason;
    a mode this bitsandbytes cannot run fails with its version and the fix."""
    checks = by_name(doctor.run_checks(env_file(KILROY_QUANTIZATION="4bit")))
    assert checks["torch"].ok and "4bit -> 4-bit NF4, compute float32" in checks["torch"].detail
    assert "bitsandbytes 0." in checks["torch"].detail
    auto = by_name(doctor.run_checks(env_file()))["torch"].detail
    assert "auto -> " in auto and ("measured" in auto or "CUDA" in auto)
    monkeypatch.setattr("bot.engine.model.bnb_unsupported", lambda mode, device: f"bitsandbytes 0.1 cannot run {mode}")
    refused = by_name(doctor.run_checks(env_file(KILROY_QUANTIZATION="8bit")))["torch"]
    assert not refused.ok and "bitsandbytes 0.1" in refused.detail and "KILROY_QUANTIZATION" in refused.fix


def test_postgresql_database_reported_and_its_failures_named(env_file, postgres_server):
    """KILROY_DATABASE_URL: the server's version and schema when it answers; the fix when it does not."""
    url = postgres_server.new_database()
    check = by_name(doctor.run_checks(env_file(KILROY_DATABASE_URL=url)))["database"]
    from bot.storage import migrations

    latest = max(n for n, _ in migrations("postgresql"))
    assert check.ok and "PostgreSQL" in check.detail and f"schema {latest}" in check.detail
    missing = postgres_server.url("no_such_database")
    check = by_name(doctor.run_checks(env_file(KILROY_DATABASE_URL=missing)))["database"]
    assert not check.ok and "createdb" in check.fix
    down = "postgresql://kilroy:hunter2@127.0.0.1:1/kilroy"
    check = by_name(doctor.run_checks(env_file(KILROY_DATABASE_URL=down)))["database"]
    assert not check.ok and "hunter2" not in check.detail and "KILROY_DATABASE_URL" in check.fix
