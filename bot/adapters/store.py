"""The adapter store: LoRA versions under `adapters/<name>/`, their metadata, and the active choice.

Layout, PEFT's on-disk format plus ours:
    adapters/v0003/adapter_model.safetensors, adapter_config.json, meta.json
    adapters/STATE.json   {"current": "v0003", "history": ["base", "v0001", "v0002"]}
Every write is atomic (temp file or folder, then os.replace). This module never loads weights into a model.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.domain.records import BASE, WEIGHTS

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
MAX_NAME = 64  # longer names are refused (a 300-character one used to end in a raw OSError from the filesystem)
_VERSION = re.compile(r"^v(\d{4,})$")
CONFIG = "adapter_config.json"
META = "meta.json"


class AdapterError(Exception):
    """Base class of adapter store errors; messages are fit to show to an operator."""


class InvalidAdapterName(AdapterError):
    def __init__(self, name: str) -> None:
        super().__init__(f"{name!r} is not a valid adapter name: use letters, digits, '_', '.', '-' and no path parts")


class AdapterNotFound(AdapterError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no adapter named {name!r}; `kilroy adapters list` shows the versions")


class CorruptAdapter(AdapterError):
    pass


class NothingToRollBack(AdapterError):
    def __init__(self) -> None:
        super().__init__("there is no earlier adapter to roll back to")


@dataclass(frozen=True)
class AdapterInfo:
    name: str
    created_at: float | None
    parent: str | None
    metrics: dict[str, Any]
    active: bool
    meta: dict[str, Any]


def validate_name(name: str) -> str:
    """Return `name` if it is a plain identifier, else raise InvalidAdapterName."""
    if not isinstance(name, str) or not _NAME.match(name) or name in (".", "..") or name.startswith(".tmp"):
        raise InvalidAdapterName(str(name)[:80])
    if len(name) > MAX_NAME:
        raise AdapterError(f"adapter names are at most {MAX_NAME} characters; {name[:20]!r}... has {len(name)}")
    return name


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (a rename into it) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    """Flush every file of a folder, and the folder itself, to disk before it is renamed into place."""
    for f in folder.iterdir():
        if f.is_file():
            with f.open("rb") as fh:
                os.fsync(fh.fileno())
    fsync_dir(folder)


def _write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temp file, flush it to disk, rename it into place, and flush the folder."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


class AdapterStore:
    """Versions on disk and the pointer to the active one."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        if not self.root.exists():  # owner-only when we create it (members' ids may sit in meta.json); else as found
            self.root.mkdir(parents=True, mode=0o700)
        self._listing: tuple[tuple[int, int], list[AdapterInfo]] | None = None

    # --- names and paths ---------------------------------------------------------------------------------------------

    def path(self, name: str) -> Path:
        """The folder of an existing, well-formed adapter; raises on a bad name, a missing or a corrupt one."""
        validate_name(name)
        if name == BASE:
            raise AdapterError("'base' is the model without an adapter; it has no folder")
        if (self.root / name).is_symlink():
            raise CorruptAdapter(f"adapter {name!r} is a symbolic link; adapters must live inside {self.root}")
        folder = (self.root / name).resolve()
        if folder.parent != self.root.resolve() or not folder.is_dir():
            raise AdapterNotFound(name)
        for entry in folder.iterdir():
            # a file linked from elsewhere could swap in weights nobody trained here
            if entry.is_symlink() or entry.resolve().parent != folder:
                raise CorruptAdapter(f"adapter {name!r} holds a link ({entry.name}); its files must live in its folder")
        if any(folder.glob("*.bin")):
            raise CorruptAdapter(f"adapter {name!r} holds .bin (pickle) weights; only safetensors are loaded")
        for required in (WEIGHTS, CONFIG):
            if not (folder / required).is_file():
                raise CorruptAdapter(f"adapter {name!r} is missing {required}")
        try:
            json.loads((folder / CONFIG).read_text(encoding="utf-8"))
            _check_safetensors(folder / WEIGHTS)
        except (ValueError, OSError) as exc:
            raise CorruptAdapter(f"adapter {name!r} is corrupt: {exc}") from exc
        return folder

    def exists(self, name: str) -> bool:
        """True for `base` and for any adapter folder with weights."""
        validate_name(name)
        return name == BASE or (self.root / name / WEIGHTS).is_file()

    def names(self) -> list[str]:
        """Adapter names on disk, oldest version first."""
        found = [
            p.name
            for p in self.root.iterdir()
            if p.is_dir() and not p.name.startswith(".") and _NAME.match(p.name) and (p / WEIGHTS).exists()
        ]
        return sorted(found, key=lambda n: (self._meta(n).get("created_at") or 0, n))

    def next_version(self) -> str:
        """The next free version name (v0001, v0002, ...)."""
        numbers = [int(m.group(1)) for n in os.listdir(self.root) if (m := _VERSION.match(n))]
        return f"v{max(numbers, default=0) + 1:04d}"

    # --- metadata ----------------------------------------------------------------------------------------------------

    def _meta(self, name: str) -> dict[str, Any]:
        try:
            meta = json.loads((self.root / name / META).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if isinstance(meta, dict) and "promoted" in meta and "accepted" not in meta:
            # written before "accepted": its "promoted" held the gate's verdict, not whether the adapter served
            meta["accepted"] = meta.pop("promoted")
        return meta

    def info(self, name: str) -> AdapterInfo:
        """Metadata of one adapter (or of `base`)."""
        current = self.current()
        if name == BASE:
            return AdapterInfo(BASE, None, None, {}, current == BASE, {})
        self.path(name)
        meta = self._meta(name)
        return AdapterInfo(
            name, meta.get("created_at"), meta.get("parent"), meta.get("metrics", {}), current == name, meta
        )

    def _listing_key(self) -> tuple[int, int]:
        # a version committed or removed changes the folder's mtime; a pointer move replaces STATE.json
        try:
            state = (self.root / "STATE.json").stat().st_mtime_ns
        except FileNotFoundError:
            state = 0
        return self.root.stat().st_mtime_ns, state

    def list(self) -> list[AdapterInfo]:
        """All versions, `base` first, with the active marker (cached until the folder or the pointer changes:
        autocomplete calls this at every keystroke, and reading every meta.json took ~50 ms at 365 versions)."""
        key = self._listing_key()
        if self._listing is not None and self._listing[0] == key:
            return list(self._listing[1])
        out = self._list_uncached()
        self._listing = (key, out)
        return list(out)

    def _list_uncached(self) -> list[AdapterInfo]:
        current = self.current()
        out = [AdapterInfo(BASE, None, None, {}, current == BASE, {})]
        for name in self.names():
            meta = self._meta(name)
            out.append(
                AdapterInfo(
                    name, meta.get("created_at"), meta.get("parent"), meta.get("metrics", {}), current == name, meta
                )
            )
        return out

    # --- writing versions --------------------------------------------------------------------------------------------

    def new_temp_dir(self) -> Path:
        """A fresh temp folder inside the store, for a candidate to be written into."""
        tmp = self.root / f".tmp-{uuid.uuid4().hex}"
        tmp.mkdir()
        return tmp

    def commit(self, tmp_dir: Path, meta: dict[str, Any], name: str | None = None) -> str:
        """Turn a written temp folder into a version, atomically; return its name."""
        tmp_dir = Path(tmp_dir)
        if not (tmp_dir / WEIGHTS).is_file() or not (tmp_dir / CONFIG).is_file():
            raise CorruptAdapter(f"{tmp_dir} does not hold {WEIGHTS} and {CONFIG}")
        for stray in tmp_dir.glob("*.bin"):
            stray.unlink()
        name = validate_name(name or self.next_version())
        if name == BASE or (self.root / name).exists():
            raise AdapterError(f"adapter {name!r} already exists")
        _write_json_atomic(tmp_dir / META, {**meta, "name": name})
        _fsync_tree(tmp_dir)
        os.replace(tmp_dir, self.root / name)
        fsync_dir(self.root)
        log.info("saved adapter %s", name)
        return name

    def scrub(self, text: str, replacement: str) -> int:
        """Replace `text` (a member id) in every adapter's meta.json; return the files rewritten."""
        changed = 0
        for meta_path in self.root.glob(f"*/{META}"):
            try:
                raw = meta_path.read_text(encoding="utf-8")
            except OSError:
                continue
            if text in raw:
                data = json.loads(raw.replace(text, replacement)) if _json_ok(raw.replace(text, replacement)) else {}
                _write_json_atomic(meta_path, data)
                changed += 1
        return changed

    def discard(self, tmp_dir: Path) -> None:
        """Remove an uncommitted temp folder."""
        shutil.rmtree(tmp_dir, ignore_errors=True)

    def remove_temp_dirs(self) -> int:
        """Remove temp folders a dead training left behind; return how many. Call only under the training lock."""
        if not self.root.is_dir():
            return 0
        leftovers = [p for p in self.root.glob(".tmp-*") if p.is_dir()]
        for p in leftovers:
            shutil.rmtree(p, ignore_errors=True)
        for p in self.root.glob(".*.tmp"):  # a JSON write interrupted before its rename
            p.unlink(missing_ok=True)
        return len(leftovers)

    # --- the active adapter ------------------------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        try:
            state = json.loads((self.root / "STATE.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {"current": BASE, "history": []}
        return {"current": state.get("current") or BASE, "history": list(state.get("history") or [])}

    def current(self) -> str:
        """The active adapter's name (`base` when none); a vanished one reads as `base`."""
        name = self._state()["current"]
        try:
            return name if self.exists(name) else BASE
        except InvalidAdapterName:
            return BASE

    def previous(self) -> str | None:
        """What a rollback would switch to, or None."""
        history = [n for n in self._state()["history"] if _NAME.match(n) and self.exists(n)]
        return history[-1] if history else None

    def set_current(self, name: str) -> None:
        """Make `name` active (after it was checked or loaded); the old one goes on the rollback history."""
        if name != BASE:
            self.path(name)
        state = self._state()
        if state["current"] == name:
            return
        history = [*state["history"], state["current"]][-50:]
        _write_json_atomic(self.root / "STATE.json", {"current": name, "history": history})

    def history(self) -> list[str]:
        """The rollback history, oldest first (names that no longer exist included)."""
        return list(self._state()["history"])

    def fall_back_to(self, name: str) -> None:
        """Make `name` current because the current one is broken: the history is cut back to before `name`'s
        last entry, so a later rollback does not return to the broken version."""
        state = self._state()
        history = state["history"]
        if name in history:
            history = history[: len(history) - 1 - history[::-1].index(name)]
        _write_json_atomic(self.root / "STATE.json", {"current": name, "history": history})

    def rollback(self) -> str:
        """Make the previous adapter active again; return its name."""
        state = self._state()
        history = state["history"]
        while history:
            candidate = history.pop()
            if self.exists(candidate):
                _write_json_atomic(self.root / "STATE.json", {"current": candidate, "history": history})
                return candidate
        raise NothingToRollBack()


def _json_ok(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _check_safetensors(path: Path) -> None:
    """Parse the safetensors header and check the file is as long as it says, without loading tensors."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise ValueError("truncated safetensors header")
        n = int.from_bytes(head, "little")
        if n <= 0 or n > size - 8:
            raise ValueError("bad safetensors header length")
        header = json.loads(f.read(n))
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end != size:
        raise ValueError("safetensors file is truncated or has trailing bytes")
