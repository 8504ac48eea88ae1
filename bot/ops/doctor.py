"""`kilroy doctor`: check a setup before it crashes. One line per check, ✓ or ✗ with the fix.

Each check is a small function returning a `Check`; `run_checks` calls them all, and a check that raises is
reported as a failed check (with the exception's message), never as a traceback. Nothing here loads the model or
connects to Discord, so the doctor answers in about a second.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import socket
import sqlite3
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from bot.config.settings import ConfigError, Settings, load_settings

MIN_FREE_BYTES = 2 * 1024**3  # a model, a night's adapter, a backup and the WAL fit comfortably


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def settings_check(env_file: str | None, overrides: Mapping[str, str] | None = None) -> tuple[Check, Settings]:
    """Load the settings; on errors, report them all and go on with the variables that did parse."""
    try:
        return Check("settings", True, f"valid (from {env_file or 'the environment'} and the environment)"), (
            load_settings(env_file, overrides)
        )
    except ConfigError as exc:
        bad = {m.group(1) for p in exc.problems if (m := re.match(r"([A-Z_]+)=", p))}
        drop = dict.fromkeys(bad, "")  # an empty value means "use the default"
        try:
            settings = load_settings(env_file, {**(overrides or {}), **drop})
        except ConfigError:
            settings = Settings()
        return Check("settings", False, "; ".join(exc.problems), "fix each variable named above in .env"), settings


def token_check(s: Settings) -> Check:
    """DISCORD_TOKEN is set (never printed)."""
    if s.discord.token:
        return Check("discord token", True, f"set ({len(s.discord.token.get())} characters, not shown)")
    return Check(
        "discord token",
        False,
        "DISCORD_TOKEN is not set (needed by `kilroy run` only)",
        "create a bot at https://discord.com/developers/applications and put DISCORD_TOKEN=... in .env",
    )


def data_dir_check(s: Settings) -> Check:
    """The data folder exists (or can be made) and takes a write."""
    d = Path(s.data_dir)
    try:
        d.mkdir(parents=True, exist_ok=True)
        probe = d / f".doctor-{uuid.uuid4().hex}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        return Check(
            "data folder",
            False,
            f"{d} is not writable ({exc.strerror or exc})",
            f"make {d} writable by this user (chown/chmod), or set KILROY_DATA_DIR",
        )
    return Check("data folder", True, f"{d.resolve()} is writable")


def database_check(s: Settings) -> Check:
    """The database opens, its migrations are current, and integrity_check passes."""
    from bot.storage import migrations

    if s.database_url:
        return postgres_check(s)
    db = Path(s.db_path)
    latest = max(n for n, _ in migrations())
    if not db.exists():
        return Check("database", True, f"{db} does not exist yet; it is created and migrated at first start")
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            version = int(con.execute("PRAGMA user_version").fetchone()[0])
            result = [r[0] for r in con.execute("PRAGMA integrity_check")]
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        return Check(
            "database",
            False,
            f"{db} cannot be read: {exc}",
            "restore the last backup: kilroy restore PATH (the damaged file is moved aside)",
        )
    if result != ["ok"]:
        return Check(
            "database",
            False,
            f"integrity_check: {'; '.join(result[:3])}",
            "restore the last backup: kilroy restore PATH",
        )
    if version > latest:
        return Check(
            "database",
            False,
            f"schema version {version} is newer than this Kilroy knows ({latest})",
            "run the Kilroy version that wrote it, or restore a backup made by this one",
        )
    pending = "" if version == latest else f"; migrations {version + 1}..{latest} apply at the next start"
    return Check("database", True, f"{db}: integrity ok, schema {version}{pending}")


def postgres_check(s: Settings) -> Check:
    """KILROY_DATABASE_URL: the server answers, the database exists, its schema is one this Kilroy knows."""
    import asyncio
    import threading

    from bot.storage import migrations

    shown = s.database_shown
    latest = max(n for n, _ in migrations("postgresql"))
    box: dict[str, object] = {}

    async def probe() -> None:
        import asyncpg

        con = await asyncpg.connect(s.database_url.get(), timeout=5)
        try:
            exists = await con.fetchval("SELECT to_regclass('kilroy_schema') IS NOT NULL")
            box["version"] = (
                int(await con.fetchval("SELECT version FROM kilroy_schema WHERE id = 1") or 0) if exists else 0
            )
            box["server"] = con.get_server_version()
        finally:
            await con.close()

    def run() -> None:
        try:
            asyncio.run(probe())
        except BaseException as exc:  # reported as the check's failure, in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=run, name="kilroy-doctor-postgres")
    thread.start()
    thread.join()
    error = box.get("error")
    if error is not None:
        name = type(error).__name__
        fix = "start the server, and check the host, port, user and password in KILROY_DATABASE_URL"
        if name == "InvalidCatalogNameError":
            fix = "create the database first (createdb, or CREATE DATABASE as a superuser), then start the bot"
        elif name in ("InvalidPasswordError", "InvalidAuthorizationSpecificationError"):
            fix = "check the user and password in KILROY_DATABASE_URL (and the server's pg_hba.conf)"
        detail = str(error).replace(s.database_url.get(), shown) or name
        return Check("database", False, f"{shown}: cannot connect ({name}: {detail})", fix)
    version, server = int(box["version"]), box["server"]  # type: ignore[call-overload]
    if version > latest:
        return Check(
            "database",
            False,
            f"{shown}: schema version {version} is newer than this Kilroy knows ({latest})",
            "run the Kilroy version that wrote it, or restore a backup made by this one",
        )
    pending = "" if version == latest else f"; migrations {version + 1}..{latest} apply at the next start"
    major = getattr(server, "major", "?")
    return Check("database", True, f"{shown}: PostgreSQL {major}, schema {version}{pending}")


def adapters_check(s: Settings) -> Check:
    """Every adapter version is well-formed (safetensors header and config), and the pointer names a good one."""

    root = Path(s.adapters_dir)
    if not root.exists():
        return Check("adapters", True, f"{root} does not exist yet (serving base until the first training)")
    from bot.domain.community import is_community

    lineages = [p for p in sorted(root.iterdir()) if p.is_dir() and is_community(p.name)]
    checks = [_lineage_check(p, f"{p.name}: ") for p in lineages]
    flat = _lineage_check(root, "", skip=lambda name: is_community(name))
    if not lineages:
        return flat  # the layout before communities (migrated at the bot's next start)
    if not flat.detail.startswith("0 version(s)"):
        checks.append(Check("adapters", flat.ok, f"flat folder, not migrated yet: {flat.detail}", flat.fix))
    failed = [c for c in checks if not c.ok]
    detail = "; ".join(c.detail for c in (failed or checks))
    return Check("adapters", not failed, detail, failed[0].fix if failed else "")


def _lineage_check(root: Path, label: str, skip: Callable[[str], bool] = lambda _n: False) -> Check:
    """One folder of versions and its pointer (a community's lineage, or the flat folder from before them)."""
    from bot.adapters.store import BASE, AdapterError, AdapterStore

    store = AdapterStore(root)
    bad: list[str] = []
    good: list[str] = []
    for entry in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and not skip(p.name)):
        try:
            store.path(entry.name)
            good.append(entry.name)
        except AdapterError as exc:
            bad.append(str(exc))
    try:
        state = json.loads((root / "STATE.json").read_text(encoding="utf-8"))
        pointer = state.get("current") or BASE
    except FileNotFoundError:
        pointer = BASE
    except ValueError as exc:
        return Check(
            "adapters",
            False,
            f"{root / 'STATE.json'} is not valid JSON: {exc}",
            "kilroy adapters use NAME (rewrites the pointer)",
        )
    if pointer != BASE and pointer not in good:
        bad.append(f"{label}the pointer names {pointer!r}, which is missing or damaged (the bot would serve base)")
    if bad:
        return Check(
            "adapters",
            False,
            "; ".join(bad),
            "move the damaged folder out of the adapters folder, then `kilroy adapters use NAME` a good version "
            "(or `kilroy adapters rollback`)",
        )
    return Check("adapters", True, f"{label}{len(good)} version(s) well-formed; serving {pointer}".lstrip())


def backups_check(s: Settings) -> Check:
    """The backup folder (KILROY_BACKUP_DIR) and what it holds are readable by this user only; no half restore."""
    from bot.ops.restore import pending

    interrupted = pending(s)
    if interrupted is not None:
        return Check("backups", False, interrupted, "start the bot (`kilroy run`), or run `kilroy restore` again")
    root = s.ops.backup_dir
    if root is None:
        return Check("backups", True, "KILROY_BACKUP_DIR is not set: no nightly backups (`kilroy backup PATH` works)")
    root = Path(root)
    if not root.exists():
        return Check("backups", True, f"{root} does not exist yet; the first nightly backup creates it 0700")
    # a backup holds members' ids and words: nobody but this user may read it, at any level
    open_to_others = [
        p for p in [root, *root.iterdir(), *root.glob("*/*")] if not p.is_symlink() and p.stat().st_mode & 0o077
    ]
    mode = f"{root.stat().st_mode & 0o777:04o}"
    backups = sorted(p.name for p in root.glob("nightly-*"))
    newest = f"; newest {backups[-1]}" if backups else ""
    if open_to_others:
        shown = ", ".join(f"{p.relative_to(root) if p != root else p.name} ({p.stat().st_mode & 0o777:04o})"
                          for p in open_to_others[:3])  # fmt: skip
        return Check(
            "backups",
            False,
            f"{root} (mode {mode}) is readable by other users: {shown}"
            + (f" and {len(open_to_others) - 3} more" if len(open_to_others) > 3 else ""),
            f"chmod -R go-rwx {root}",
        )
    return Check("backups", True, f"{root}: mode {mode}, owner only; {len(backups)} nightly backup(s){newest}")


def model_check(s: Settings) -> Check:
    """The base model is available offline (tiny built, local folder present, or hub files cached)."""
    name = s.model.name
    if name == "tiny" or name.startswith("tiny:"):
        from bot.engine.tiny import tiny_path

        preset = name.split(":", 1)[1] if ":" in name else "default"
        path = tiny_path(s.data_dir, preset)
        if (path / "config.json").exists():
            return Check("model", True, f"offline tiny model cached at {path}")
        return Check(
            "model",
            False,
            f"the offline tiny model is not built yet ({path})",
            "run `kilroy simulate --nights 1` once (builds it in a minute or two)",
        )
    if Path(name).exists():
        ok = (Path(name) / "config.json").exists()
        return Check(
            "model",
            ok,
            f"local model folder {name}" + ("" if ok else " has no config.json"),
            "" if ok else "point KILROY_MODEL at a folder saved with save_pretrained",
        )
    from huggingface_hub import constants, try_to_load_from_cache

    cached = try_to_load_from_cache(name, "config.json")
    if isinstance(cached, str):
        return Check("model", True, f"{name} cached in {constants.HF_HUB_CACHE}")
    return Check(
        "model",
        False,
        f"{name} is not cached yet (HF_HOME={constants.HF_HOME})",
        f"the first `kilroy run` downloads it (gpt2: about 550 MB); to fetch it now: kilroy generate --model {name}",
    )


def disk_check(s: Settings) -> Check:
    """Enough free space where the data lives."""
    d = Path(s.data_dir)
    probe = d if d.exists() else Path.cwd()
    free = shutil.disk_usage(probe).free
    ok = free >= MIN_FREE_BYTES
    return Check(
        "free disk",
        ok,
        f"{free / 1024**3:.1f} GiB free at {probe.resolve()}",
        "" if ok else f"free at least {MIN_FREE_BYTES / 1024**3:.0f} GiB (old backups, adapters/.replaced-*)",
    )


def torch_check(s: Settings) -> Check:
    """torch (and CUDA, bitsandbytes) found; which precision KILROY_QUANTIZATION resolves to here, and why."""
    if importlib.util.find_spec("torch") is None:
        return Check("torch", False, "torch is not installed", "pip install torch==2.13.0 (see README, Install)")
    import torch

    from bot.engine.model import ModelLoadError, choose_precision

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    where = f"CUDA ({torch.cuda.get_device_name(0)})" if cuda else "CPU only"
    try:
        picked = choose_precision(s.model.quantization, device, cuda_bf16=cuda and torch.cuda.is_bf16_supported())
    except ModelLoadError as exc:
        return Check("torch", False, f"torch {torch.__version__}, {where}: {exc}", "set KILROY_QUANTIZATION=auto")
    precision = {"none": "full precision", "4bit": "4-bit NF4", "8bit": "8-bit"}.get(picked.quantization)
    bnb = importlib.util.find_spec("bitsandbytes") is not None
    return Check(
        "torch",
        True,
        f"torch {torch.__version__}, {where}, bitsandbytes {_bnb_version() if bnb else 'absent'}; "
        f"KILROY_QUANTIZATION={s.model.quantization} -> {precision}, compute {picked.compute_dtype} "
        f"({picked.reason})",
    )


def _bnb_version() -> str:
    from importlib.metadata import version

    return version("bitsandbytes")


def http_check(s: Settings) -> Check:
    """The HTTP port is free (when one is set)."""
    if s.ops.http_port is None:
        return Check("http port", True, "KILROY_HTTP_PORT is empty: no HTTP server (no /healthz for a supervisor)")
    with socket.socket() as sock:
        try:
            sock.bind((s.ops.http_host, s.ops.http_port))
        except OSError as exc:
            return Check(
                "http port",
                False,
                f"{s.ops.http_host}:{s.ops.http_port} is taken ({exc.strerror or exc})",
                "stop what listens there (a running bot?) or set KILROY_HTTP_PORT to a free port",
            )
    return Check("http port", True, f"{s.ops.http_host}:{s.ops.http_port} is free")


def queue_check(s: Settings) -> Check:
    """KILROY_TRAINING_QUEUE=postgres: the queue's packages, its database, and a live `kilroy worker`."""
    if s.training.queue == "local":
        return Check("training queue", True, "local: training runs in a worker process beside the bot")
    from bot.training.queue import QueueUnavailable, psycopg_url, require_queue

    try:
        require_queue()
    except QueueUnavailable as exc:
        return Check("training queue", False, str(exc), "scripts/install.sh .venv scale")
    import psycopg

    try:
        with psycopg.connect(psycopg_url(s.database_url.get()), connect_timeout=5, autocommit=True) as conn:
            if conn.execute("SELECT to_regclass('procrastinate_jobs')").fetchone() == (None,):
                return Check("training queue", True, "not installed yet: the bot or a worker installs it at start")
            workers = conn.execute(
                "SELECT count(*) FROM procrastinate_workers WHERE last_heartbeat > now() - make_interval(secs => %s)",
                (s.training.stalled_seconds,),
            ).fetchone()
            waiting = conn.execute(
                "SELECT count(*) FROM procrastinate_jobs WHERE status = 'todo' AND queue_name = 'training'"
            ).fetchone()
    except psycopg.Error as exc:
        return Check(
            "training queue",
            False,
            f"cannot reach the queue's database ({type(exc).__name__}: {str(exc).strip()[:200]})",
            "check KILROY_DATABASE_URL (host, port, user, password) and that PostgreSQL accepts connections",
        )
    live, todo = (workers or (0,))[0], (waiting or (0,))[0]
    if not live:
        return Check(
            "training queue",
            False,
            f"no `kilroy worker` has sent a heartbeat in the last {s.training.stalled_seconds:g} s; {todo} job(s) wait",
            "start `kilroy worker` (README: Training on another machine), or set KILROY_TRAINING_QUEUE=local",
        )
    return Check("training queue", True, f"{live} live worker(s), {todo} job(s) waiting")


CHECKS: tuple[Callable[[Settings], Check], ...] = (
    token_check,
    data_dir_check,
    database_check,
    adapters_check,
    backups_check,
    model_check,
    disk_check,
    torch_check,
    http_check,
    queue_check,
)


def run_checks(env_file: str | None = ".env", overrides: Mapping[str, str] | None = None) -> list[Check]:
    """Every check, in order; a crashing check is a failed check."""
    first, settings = settings_check(env_file, overrides)
    out = [first]
    for check in CHECKS:
        name = check.__name__.removesuffix("_check").replace("_", " ")
        try:
            out.append(check(settings))
        except Exception as exc:
            out.append(
                Check(
                    name,
                    False,
                    f"the check itself failed: {type(exc).__name__}: {exc}",
                    "report this; the other checks still ran",
                )
            )
    return out


def render(checks: list[Check], *, color: bool = False) -> str:
    """One line per check: ✓/✗, the name, what was found, and for a failure the fix."""
    lines = []
    for c in checks:
        mark = "✓" if c.ok else "✗"
        if color:
            mark = f"\033[32m{mark}\033[0m" if c.ok else f"\033[31m{mark}\033[0m"
        line = f"{mark} {c.name:<14} {c.detail}"
        if not c.ok and c.fix:
            line += f"\n  {'':<14} fix: {c.fix}"
        lines.append(line)
    failed = sum(not c.ok for c in checks)
    lines.append("all checks passed" if not failed else f"{failed} check(s) failed")
    return "\n".join(lines)


def as_json(checks: list[Check]) -> str:
    """`--json`: {"ok": bool, "checks": [{"name", "ok", "detail", "fix"}, ...]}."""
    return json.dumps({"ok": all(c.ok for c in checks), "checks": [asdict(c) for c in checks]}, ensure_ascii=False)


def main(env_file: str | None, overrides: Mapping[str, str] | None, *, json_output: bool) -> int:
    """Run the doctor; exit 0 only when every check passes. Never raises."""
    try:
        checks = run_checks(env_file, overrides)
    except Exception as exc:  # the settings check itself: still no traceback
        checks = [Check("settings", False, f"{type(exc).__name__}: {exc}", "fix .env")]
    with contextlib.suppress(BrokenPipeError):
        if json_output:
            print(as_json(checks))  # noqa: T201
        else:
            print(render(checks, color=os.isatty(1)))  # noqa: T201
    return 0 if all(c.ok for c in checks) else 1
