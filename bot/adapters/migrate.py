"""The move from one flat adapter folder to a lineage per community (issue 24), run at every start.

Before:  adapters/v0001 ... adapters/v0007, adapters/STATE.json, adapters/reward_model.json
After:   adapters/<community>/v0001 ... v0007, STATE.json, reward_model.json, for every server that posted (its
         community "g<guild_id>") and for the commons (which serves new servers; posts made without a server)

Each target lineage gets every flat version, hard-linked (copied where links fail): a version appears whole or not
at all (a temp folder renamed into place), its pointer and history are copied after its versions, and the marker
`adapters/LINEAGES.json` is written after every target. Only then are the flat entries removed. A crash anywhere
is finished by the next start; a second run changes nothing. Weight files are never written in place (every
write in `AdapterStore` is a rename), so linked copies never change under another lineage.

API: `migrate_flat(root, communities) -> list[str]` (what it did, for the log); `flat_versions(root)`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

from bot.adapters.lineages import REWARD_MODEL
from bot.adapters.store import AdapterStore, _fsync_tree, _write_json_atomic, fsync_dir
from bot.domain.community import COMMONS, validate_community
from bot.domain.records import WEIGHTS

log = logging.getLogger(__name__)

MARKER = "LINEAGES.json"
STATE = "STATE.json"
_VERSION = re.compile(r"^v\d{4,}$")


def flat_versions(root: Path) -> list[str]:
    """Version folders at the top of the adapters folder (the layout before communities), sorted."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and _VERSION.match(p.name) and (p / WEIGHTS).exists())


def _is_flat(root: Path) -> bool:
    return bool(flat_versions(root)) or (root / STATE).is_file() or (root / REWARD_MODEL).is_file()


def _link_tree(src: Path, dst: Path) -> None:
    """Hard-link (or copy) a version folder's files into an existing empty folder."""
    for f in src.iterdir():
        if f.is_symlink() or not f.is_file():
            continue  # the store refuses links; nothing else belongs in a version folder
        try:
            os.link(f, dst / f.name)
        except OSError:  # another filesystem, or links not allowed: a copy
            shutil.copy2(f, dst / f.name)


def _copy_file_atomic(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.{uuid.uuid4().hex}.tmp")
    shutil.copy2(src, tmp)
    with tmp.open("rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, dst)
    fsync_dir(dst.parent)


def _into(root: Path, community: str, versions: list[str]) -> int:
    """Copy the flat lineage into one community's; return the versions added."""
    store = AdapterStore(root / community)
    added = 0
    for name in versions:
        if (store.root / name).exists():
            continue
        tmp = store.new_temp_dir()
        try:
            _link_tree(root / name, tmp)
            _fsync_tree(tmp)
            os.replace(tmp, store.root / name)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        fsync_dir(store.root)
        added += 1
    if (root / REWARD_MODEL).is_file() and not (store.root / REWARD_MODEL).exists():
        _copy_file_atomic(root / REWARD_MODEL, store.root / REWARD_MODEL)
    if (root / STATE).is_file() and not (store.root / STATE).exists():
        _copy_file_atomic(root / STATE, store.root / STATE)  # last: the lineage is whole once it has a pointer
    return added


def migrate_flat(root: Path, communities: Iterable[str]) -> list[str]:
    """Turn a flat adapters folder into the lineage of each of `communities` and of the commons; idempotent and
    crash-safe (see the module docstring). Call under the training lock, before anything reads a lineage."""
    root = Path(root)
    done: list[str] = []
    marker = root / MARKER
    if not root.is_dir():
        return done
    if not marker.is_file():
        if not _is_flat(root):
            return done  # a fresh folder, or lineages only: nothing to move
        targets = sorted({validate_community(c) for c in communities} | {COMMONS})
        versions = flat_versions(root)
        for community in targets:
            added = _into(root, community, versions)
            done.append(f"flat adapters -> {community} ({added} version(s) added)")
        _write_json_atomic(marker, {"migrated": targets, "versions": versions, "at": time.time()})
    # the marker is down: the flat entries are no longer needed (a crash here is finished by the next start)
    for name in flat_versions(root):
        shutil.rmtree(root / name)
        done.append(f"removed flat {name}")
    for leftover in (STATE, REWARD_MODEL):
        if (root / leftover).exists():
            (root / leftover).unlink()
            done.append(f"removed flat {leftover}")
    if done:
        fsync_dir(root)
    for line in done:
        log.info("adapters migration: %s", line)
    return done


def migrated(root: Path) -> dict[str, object]:
    """The marker's content ({} before the migration, or when there was nothing to move)."""
    try:
        return dict(json.loads((Path(root) / MARKER).read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}
