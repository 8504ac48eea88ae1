"""The JSON form of settings: how the caller's exact settings travel to the training worker (on its stdin), secrets
left out."""

from __future__ import annotations

import dataclasses
import datetime as dt
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bot.config.env import Secret, parse_time


def encode(value: Any) -> Any:
    """A settings value (a dataclass of them, or one field) as plain JSON; a secret becomes None."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Secret):
        return None  # never serialised
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dt.time):
        return value.strftime("%H:%M")
    if isinstance(value, tuple | list):
        return [encode(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): encode(v) for k, v in value.items()}
    return value


def decode(template: Any, data: Any) -> Any:
    """Rebuild a value shaped like `template` (a default instance) from its JSON form.

    Unknown keys are an error, missing ones keep the template's value, secrets come back empty."""
    if dataclasses.is_dataclass(template) and not isinstance(template, type):
        if not isinstance(data, Mapping):
            raise ValueError(f"expected an object for {type(template).__name__}")
        names = {f.name for f in dataclasses.fields(template)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown settings: {', '.join(sorted(unknown))}")
        hints = typing.get_type_hints(type(template))
        changes = {}
        for k, v in data.items():
            default = getattr(template, k)
            if default is None and v is not None and "Path" in str(hints.get(k, "")):
                changes[k] = Path(v)  # an optional path whose default is None
            else:
                changes[k] = decode(default, v)
        return dataclasses.replace(template, **changes)
    if isinstance(template, Secret):
        return Secret("")
    if isinstance(template, Path):
        return Path(data)
    if isinstance(template, dt.time):
        return parse_time(data)
    if isinstance(template, tuple):
        return tuple(data)
    if isinstance(template, Mapping):
        return dict(data)
    if isinstance(template, float) and isinstance(data, int):
        return float(data)
    return data
