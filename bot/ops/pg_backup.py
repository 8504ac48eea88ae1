"""The PostgreSQL side of backups: `pg_dump` into the backup folder, and the checks of such a dump.

`kilroy backup` on a PostgreSQL install writes `kilroy.pgdump` (pg_dump's custom format: compressed, restorable
table by table with pg_restore) where a SQLite install writes `kilroy.db`; the adapters, STATE.json and the manifest
are the same. pg_dump reads one consistent snapshot (a single repeatable-read transaction) while the bot keeps
writing. The password never goes on a command line (where `ps` shows it): it travels in PGPASSWORD.

The dump is checked before the backup counts: `pg_restore --list` must read its whole table of contents, and its
`kilroy_schema` row gives the schema version (newer than this Kilroy knows: refused).

`kilroy restore` puts one back with `restore_dump` (pg_restore --clean --single-transaction: the database is the old
one or the backup's), then forgets again the members the replaced database had recorded as opted out
(`bot/ops/restore.py`).
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from bot.config.env import hide_password

DUMP_NAME = "kilroy.pgdump"
TIMEOUT = 6 * 3600  # a dump of a very large history may take a while; a hung server does not hold us for ever


class DumpError(Exception):
    """pg_dump or pg_restore failed or is missing; the message says why and what to install."""


def tool(name: str) -> str:
    """The path of a PostgreSQL client program (pg_dump, pg_restore): on PATH, or Debian's newest install."""
    found = shutil.which(name)
    if found:
        return found
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True):
        if os.access(Path(folder) / name, os.X_OK):
            return str(Path(folder) / name)
    raise DumpError(
        f"{name} not found: install the PostgreSQL client programs (Debian: apt-get install postgresql-client; "
        "their major version at least the server's)"
    )


def _split_password(url: str) -> tuple[str, dict[str, str]]:
    """The URL without its password, and the environment that carries it."""
    parts = urlsplit(url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}  # nothing of the caller's PG* applies
    if parts.password is None:
        return url, env
    user, host = parts.netloc.rsplit("@", 1)
    env["PGPASSWORD"] = parts.password
    return urlunsplit(parts._replace(netloc=f"{user.split(':', 1)[0]}@{host}")), env


def _run(args: list[str], env: dict[str, str], what: str, url: str) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DumpError(f"{what} failed for {hide_password(url)}: {exc}") from exc
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().replace(url, hide_password(url))[-1500:]
        raise DumpError(f"{what} failed for {hide_password(url)}: {detail}")
    return done


def dump(url: str, path: Path) -> None:
    """pg_dump the database at `url` into the new file `path` (created 0600 before pg_dump writes into it)."""
    bare, env = _split_password(url)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    _run(
        [tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges", f"--file={path}", f"--dbname={bare}"],
        env,
        "pg_dump",
        url,
    )
    os.chmod(path, 0o600)


def check_dump(path: Path, *, what: str) -> int:
    """The schema version held by a readable pg_dump archive; DumpError if pg_restore cannot read it whole."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    listing = _run([tool("pg_restore"), "--list", str(path)], env, f"reading {what}", str(path)).stdout
    if not re.search(r"TABLE DATA \S+ posts ", listing):
        raise DumpError(f"{what} is not a dump of a Kilroy database (no posts table)")
    data = _run(
        [tool("pg_restore"), "--data-only", "--table=kilroy_schema", "--file=-", str(path)], env, what, str(path)
    ).stdout
    match = re.search(r"^COPY \S*kilroy_schema .*?FROM stdin;\n1\t(\d+)\n", data, re.MULTILINE)
    if not match:
        raise DumpError(f"{what} holds no schema version (kilroy_schema): not a dump of a Kilroy database")
    return int(match.group(1))


def restore_dump(url: str, path: Path) -> None:
    """Replace the database's Kilroy tables by those of the dump, in one transaction (all or nothing)."""
    bare, env = _split_password(url)
    _run(
        [tool("pg_restore"), "--clean", "--if-exists", "--single-transaction", "--no-owner", "--no-privileges",
         f"--dbname={bare}", str(path)],
        env,
        "pg_restore",
        url,
    )  # fmt: skip
