"""Restore (issue 23, items 1, 2 and 5): a tampered backup is refused before anything changes; the swap is all or
nothing, even killed with SIGKILL after any step; a restore never brings back a member who used /forget-me."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.cli.main import main
from bot.ops import doctor
from bot.ops.backup import BackupError, backup, verify
from bot.ops.restore import recover, restore
from bot.storage import NewPost, Storage
from tests.support.adapters import fake_adapter
from tests.support.storage import add_story_line

M = 626262626262626262  # the member who asks to be forgotten after the backup
ROOT = Path(__file__).resolve().parents[2]


async def add_posts(settings, first: int, n: int, *, member: int | None = None) -> None:
    async with Storage.open(settings.db_path) as storage:
        for i in range(first, first + n):
            await storage.add_post(NewPost(channel_id=1, text=f"p{i}", adapter="v0001", created_at=time.time(),
                                           message_id=100 + i))  # fmt: skip
        if member is not None:
            await storage.add_vote(100 + first, member, "❤️", at=1.0)
            story = await storage.start_story(5, instruction="i", opening="o", started_by=None, at=1.0)
            await add_story_line(storage, story, speaker="human_director", text="M's own words", member_id=member,
                                         at=2.0)  # fmt: skip


async def forget(settings, member: int) -> None:
    async with Storage.open(settings.db_path) as storage:
        await storage.forget_member(member, at=10.0)


@pytest.fixture
async def install(make_settings, tmp_path):
    """A live install, a backup of it (b: 5 posts, serving v0001), then newer state (8 posts, serving v0002)."""
    settings = make_settings()
    await add_posts(settings, 0, 5, member=M)
    fake_adapter(settings.adapters_dir, "v0001")
    (settings.adapters_dir / "STATE.json").write_text(json.dumps({"current": "v0001", "history": ["base"]}))
    backup(settings, tmp_path / "b")
    await add_posts(settings, 5, 3)
    fake_adapter(settings.adapters_dir, "v0002")
    (settings.adapters_dir / "STATE.json").write_text(json.dumps({"current": "v0002", "history": ["base", "v0001"]}))
    outside = tmp_path / "outside"
    fake_adapter(outside, "victim")
    return settings


def snapshot(settings) -> dict[str, bytes]:
    """Every file of the live install, byte for byte (the data folder and the adapters folder)."""
    out = {}
    for root in (Path(settings.data_dir), Path(settings.adapters_dir)):
        for p in sorted(root.rglob("*")):
            if p.is_file() or p.is_symlink():
                out[str(p)] = p.read_bytes() if p.is_file() else os.readlink(p).encode()
    return out


def state(settings) -> tuple[list[str], str, bytes]:
    """What the install serves: the posts, the pointer, the named adapters' files (logical content)."""
    con = sqlite3.connect(settings.db_path)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        posts = [r[0] for r in con.execute("SELECT text FROM posts ORDER BY id")]
    finally:
        con.close()
    pointer = json.loads((settings.adapters_dir / "STATE.json").read_text())
    files = b"".join(
        p.read_bytes() for name in {pointer["current"], *pointer["history"]} - {"base"}
        for p in sorted((settings.adapters_dir / name).iterdir())
    )  # fmt: skip
    return posts, pointer["current"], hashlib.sha256(files).digest()


def rewrite(b: Path, change) -> None:
    """Tamper with a backup's manifest as an attacker would (the manifest carries no signature)."""
    manifest = json.loads((b / "manifest.json").read_text())
    change(manifest)
    (b / "manifest.json").write_text(json.dumps(manifest))


def reseal(b: Path, rel: str) -> None:
    """Make the manifest's checksum of `rel` match the file again (what an attacker does after editing it)."""
    data = (b / rel).read_bytes()
    rewrite(b, lambda m: m["files"].__setitem__(rel, {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}))


def _file_entry(rel):
    return lambda m: m["files"].__setitem__(rel, m["files"]["kilroy.db"])


def _set(key, value):
    return lambda m: m.__setitem__(key, value)


def _state_names(b: Path, names) -> None:
    (b / "adapters" / "STATE.json").write_text(json.dumps({"current": names[0], "history": names[1:]}))
    reseal(b, "adapters/STATE.json")


def _symlinked_folder(b: Path, outside: Path, keep_files: bool) -> None:
    """adapters/v0001 in the backup is a link to a folder elsewhere (issue 23, item 2)."""
    import shutil

    if keep_files:  # a mirror of the backup's own files elsewhere: every checksum still matches
        shutil.copytree(b / "adapters" / "v0001", outside / "mirror")
        shutil.rmtree(b / "adapters" / "v0001")
        (b / "adapters" / "v0001").symlink_to(outside / "mirror", target_is_directory=True)
        return
    shutil.rmtree(b / "adapters" / "v0001")
    (b / "adapters" / "v0001").symlink_to(outside / "victim", target_is_directory=True)
    if not keep_files:
        rewrite(b, lambda m: [m["files"].pop(k) for k in list(m["files"]) if k.startswith("adapters/v0001/")])


def _symlinked_file(b: Path, outside: Path) -> None:
    meta = b / "adapters" / "v0001" / "meta.json"
    (outside / "copy.json").write_bytes(meta.read_bytes())  # the same bytes: the checksum matches
    meta.unlink()
    meta.symlink_to(outside / "copy.json")


def _symlinked_db(b: Path, outside: Path) -> None:
    (b / "kilroy.db").rename(outside / "x.db")  # the same bytes elsewhere: the checksum matches
    (b / "kilroy.db").symlink_to(outside / "x.db")


def _damaged_db(b: Path) -> None:
    db = b / "kilroy.db"
    con = sqlite3.connect(db)
    root = con.execute("SELECT rootpage FROM sqlite_master WHERE name = 'posts'").fetchone()[0]
    page_size = con.execute("PRAGMA page_size").fetchone()[0]
    con.close()
    raw = bytearray(db.read_bytes())
    start = (root - 1) * page_size
    raw[start : start + 16] = b"\x0d\x00\x00\xff\xff" + b"\xff" * 11  # a leaf page header claiming impossible cells
    db.write_bytes(bytes(raw))
    reseal(b, "kilroy.db")


def _not_sqlite(b: Path) -> None:
    (b / "kilroy.db").write_text("just some text, not a database\n" * 100)
    reseal(b, "kilroy.db")


TAMPERING = {
    # absolute and ../ names in every manifest field: files, adapters, current, and the pointer file's names
    "files: absolute name": lambda b, o: rewrite(b, _file_entry(str(o / "victim" / "meta.json"))),
    "files: ../ name": lambda b, o: rewrite(b, _file_entry("../outside/victim/meta.json")),
    "files: ../ inside adapters": lambda b, o: rewrite(b, _file_entry("adapters/v0001/../../../outside/x")),
    "files: ./ and // parts": lambda b, o: rewrite(b, _file_entry("adapters//v0001/./meta.json")),
    "files: outside the layout": lambda b, o: rewrite(b, _file_entry("somewhere/else.txt")),
    "adapters: absolute name": lambda b, o: rewrite(b, _set("adapters", ["v0001", str(o / "victim")])),
    "adapters: ../ name": lambda b, o: rewrite(b, _set("adapters", ["v0001", "../outside/victim"])),
    "adapters: not a list": lambda b, o: rewrite(b, _set("adapters", "v0001")),
    "current: absolute name": lambda b, o: rewrite(b, _set("current", str(o / "victim"))),
    "current: ../ name": lambda b, o: rewrite(b, _set("current", "../outside/victim")),
    "STATE.json: ../ name": lambda b, o: _state_names(b, ["../outside/victim", "base"]),
    "STATE.json: absolute history": lambda b, o: _state_names(b, ["v0001", str(o / "victim")]),
    "listed but missing adapter": lambda b, o: rewrite(b, _set("adapters", ["v0001", "v0009"])),
    "symlinked folder, files dropped": lambda b, o: _symlinked_folder(b, o, keep_files=False),
    "symlinked folder, files kept": lambda b, o: _symlinked_folder(b, o, keep_files=True),
    "symlinked file": _symlinked_file,
    "symlinked database": lambda b, o: _symlinked_db(b, o),
    "not a SQLite database": lambda b, o: _not_sqlite(b),
    "damaged database": lambda b, o: _damaged_db(b),
}


@pytest.mark.parametrize("case", list(TAMPERING))
async def test_a_tampered_backup_is_refused_and_nothing_changes(install, tmp_path, case, capsys):
    """Regression (issue 23, items 1 and 2): restore moved any path a manifest named, before checking the names;
    `--check` passed a listed-but-missing adapter and a symlinked adapter folder. Every refusal leaves the live
    install and the outside folder byte for byte as they were."""
    outside = tmp_path / "outside"
    TAMPERING[case](tmp_path / "b", outside)
    before, outside_before = snapshot(install), sorted(p.name for p in (outside / "victim").iterdir())
    with pytest.raises(BackupError):
        verify(tmp_path / "b")
    with pytest.raises(BackupError):
        restore(install, tmp_path / "b")
    env = {"KILROY_DATA_DIR": str(install.data_dir), "KILROY_ADAPTERS_DIR": str(install.adapters_dir)}
    for k, v in env.items():
        os.environ[k] = v
    try:
        assert main(["--env-file", "/nonexistent", "restore", "--check", str(tmp_path / "b")]) == 2
        assert main(["--env-file", "/nonexistent", "restore", str(tmp_path / "b")]) == 2
    finally:
        for k in env:
            os.environ.pop(k)
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err
    assert snapshot(install) == before
    assert sorted(p.name for p in (outside / "victim").iterdir()) == outside_before


async def test_restore_puts_the_backup_in_place_and_forgets_again(install, tmp_path):
    """Regression (issue 23, item 5): a backup taken before a /forget-me brought the member's vote and words back,
    and cleared their opt-out. Now they are forgotten again in the restored database."""
    await forget(install, M)
    result = restore(install, tmp_path / "b")
    posts, current, _ = state(install)
    assert posts == [f"p{i}" for i in range(5)] and current == "v0001"
    assert result["opt_outs"]["members forgotten"] == 1
    con = sqlite3.connect(install.db_path)
    try:
        texts = " ".join(str(v) for t in ("votes", "story_lines") for row in con.execute(f"SELECT * FROM {t}")
                         for v in row)  # fmt: skip
    finally:
        con.close()
    assert str(M) not in texts and "M's own words" not in texts
    async with Storage.open(install.db_path) as storage:
        assert storage.is_opted_out(M)
        assert not await storage.add_vote(100, M, "❤️", at=20.0)
    assert all(p.stat().st_mode & 0o077 == 0 for p in [install.db_path, install.adapters_dir / "v0001" / "meta.json"])


KILLER = """
import json, os, signal, sys
from bot.config.settings import Settings
from bot.ops.restore import restore
env, src, kill_at = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
def step(name):
    if name == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
restore(Settings.from_env(env), src, on_step=step)
"""


def test_a_restore_killed_after_any_step_is_the_old_install_or_the_new(make_settings, tmp_path):
    """SIGKILL after each step of a restore, then what the next start does (`recover`): the install is exactly the
    old one or the new one, the doctor finds nothing wrong, and a killed restore never leaves a mix."""
    import shutil

    settings = make_settings()
    asyncio.run(add_posts(settings, 0, 5, member=M))
    fake_adapter(settings.adapters_dir, "v0001")
    (settings.adapters_dir / "STATE.json").write_text(json.dumps({"current": "v0001", "history": ["base"]}))
    backup(settings, tmp_path / "b")
    asyncio.run(add_posts(settings, 5, 3))
    asyncio.run(forget(settings, M))  # so the restore has opt-outs to re-apply
    fake_adapter(settings.adapters_dir, "v0002")
    (settings.adapters_dir / "STATE.json").write_text(json.dumps({"current": "v0002", "history": ["v0001"]}))
    pristine = tmp_path / "pristine"
    shutil.copytree(tmp_path / "data", pristine / "data")
    shutil.copytree(tmp_path / "adapters", pristine / "adapters")
    old = state(settings)

    def reset() -> None:
        for name in ("data", "adapters"):
            shutil.rmtree(tmp_path / name)
            shutil.copytree(pristine / name, tmp_path / name)

    steps: list[str] = []
    restore(settings, tmp_path / "b", on_step=steps.append)
    new = state(settings)
    assert new != old and steps[-1] == "done" and len(steps) >= 8
    env = {"KILROY_DATA_DIR": str(tmp_path / "data"), "KILROY_ADAPTERS_DIR": str(tmp_path / "adapters"),
           "KILROY_MODEL": "gpt2"}  # fmt: skip
    seen = set()
    for kill_at in steps:
        reset()
        proc = subprocess.run(
            [sys.executable, "-c", KILLER, json.dumps(env), str(tmp_path / "b"), kill_at],
            cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert proc.returncode == -signal.SIGKILL, (kill_at, proc.stderr[-2000:])
        recover(settings)  # what the next `kilroy run` does first
        now = state(settings)
        assert now in (old, new), f"killed after {kill_at!r}: a mix of old and new"
        raw = b"".join(p.read_bytes() for p in Path(settings.data_dir).glob("kilroy.db*") if "replaced" not in p.name)
        assert b"M's own words" not in raw, f"killed after {kill_at!r}: the forgotten member is back"
        seen.add("old" if now == old else "new")
        checks = {c.name: c for c in (doctor.database_check(settings), doctor.adapters_check(settings),
                                      doctor.backups_check(settings))}  # fmt: skip
        assert all(c.ok for c in checks.values()), (kill_at, checks)
        leftovers = [p.name for p in Path(settings.data_dir).iterdir() if ".restor" in p.name]
        leftovers += [p.name for p in Path(settings.adapters_dir).iterdir() if p.name.startswith(".restoring")]
        assert leftovers == [], (kill_at, leftovers)
    assert seen == {"old", "new"}  # killed before the journal: old; after it: new
