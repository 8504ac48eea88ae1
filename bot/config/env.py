"""How a declared setting is read from the environment and `.env`: the `setting()` helper, the kinds of value, and
the reader, a loop over the declarations that collects every problem with the variable, the value and the fix.

Nothing here names a particular setting: the declarations are in `bot/config/settings.py`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MAX_WEIGHT = 100.0  # the largest |weight| an emoji or a reply may carry
SPEC = "kilroy.setting"  # the dataclass field metadata key of a declaration
SECTION = "kilroy.section"  # ... and of a section (a dataclass of settings inside Settings)


class ConfigError(Exception):
    """One or more settings are invalid; the message lists each with its fix."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


class Secret:
    """A string that never shows itself in a repr, a log line or a traceback."""

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        """Return the secret value; call only where it is used."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


# --- kinds: how the text of one variable becomes a value --------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """One kind of value: how its text parses (raising ValueError with the rule) and how a value is written back."""

    name: str
    expected: str  # what the text must be, for the error: "a number"
    parse: Callable[[str, Spec], Any]
    show: Callable[[Any], str] = str  # a value as text that reads back to it (.env.example, the error's example)
    example: str = ""  # the error's example when the default's own text is no help
    strip: bool = True  # surrounding whitespace is not part of the value, and a blank value means the default
    numeric: bool = False  # has bounds: every numeric declaration names its lowest and highest value
    quote: Callable[[str], str] = repr  # the rejected text as an error shows it (a URL's password is left out)


def _bounded(x: float, low: float | None, high: float | None) -> None:
    if (low is not None and x < low) or (high is not None and x > high):
        if high is None:
            raise ValueError(f"must be at least {low}")
        if low is None:
            raise ValueError(f"must be at most {high}")
        raise ValueError(f"must be between {low} and {high}")


def _number(v: str, spec: Spec) -> float:
    x = float(v)
    if not math.isfinite(x):
        raise ValueError("must be a finite number")
    _bounded(x, spec.lo, spec.hi)
    return x


def _integer(v: str, spec: Spec) -> int:
    x = int(v)
    _bounded(x, spec.lo, spec.hi)
    return x


def _flag(v: str, spec: Spec) -> bool:
    if v.lower() in ("1", "true", "yes", "on"):
        return True
    if v.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError("use true or false")


def _choice(v: str, spec: Spec) -> str:
    if v.lower() not in spec.choices:
        raise ValueError(f"choose one of {', '.join(spec.choices)}")
    return v.lower()


def _ids(v: str, spec: Spec | None = None) -> tuple[int, ...]:
    parts = [p for p in re.split(r"[,\s]+", v) if p]
    if not all(p.isdigit() for p in parts):
        raise ValueError("Discord ids are digits only")
    return tuple(int(p) for p in parts)


def _one_id(v: str, spec: Spec) -> int | None:
    ids = _ids(v)
    return ids[0] if ids else None


def _words(v: str, spec: Spec) -> tuple[str, ...]:
    return tuple(w.strip().lower() for w in v.split(",") if w.strip())


def emoji_key(emoji: str) -> str:
    """How an emoji is keyed in votes and weights: unicode as itself, a custom one as `<:name:id>` without the
    animated flag (`<a:name:id>`), which Discord has sent inconsistently (left out of removal events until mid-2023,
    reported unreliable on adds: discord-api-docs #812, #6135): a flagged add whose removal came without it stayed."""
    return "<:" + emoji[3:] if emoji.startswith("<a:") else emoji


def _weights(value: str, spec: Spec | None = None) -> dict[str, float]:
    weights: dict[str, float] = {}
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        emoji, sep, weight = part.rpartition("=")
        if not sep or not emoji.strip():
            raise ValueError(f"{part!r} has no '='")
        w = float(weight)
        if not math.isfinite(w) or abs(w) > MAX_WEIGHT:
            raise ValueError(f"weight {weight.strip()!r} must be finite, between -{MAX_WEIGHT} and {MAX_WEIGHT}")
        weights[emoji_key(emoji.strip())] = w
    return weights


def _show_weights(weights: Mapping[str, float]) -> str:
    return ",".join(f"{k}={w:g}" for k, w in weights.items())


def parse_time(value: str, spec: Spec | None = None) -> dt.time:
    """A time of day from `HH:MM` (or `HH`)."""
    hour, _, minute = value.partition(":")
    return dt.time(int(hour), int(minute or 0))


def _zone(value: str, spec: Spec) -> str:
    ZoneInfo(value)
    return value


def _show(value: Any) -> str:
    """The text of a plain value: nothing for None, a list comma-separated."""
    if value is None:
        return ""
    if isinstance(value, tuple | list):
        return ",".join(str(v) for v in value)
    return str(value)


NUMBER = Kind("number", "a number", _number, show=repr, numeric=True)
INTEGER = Kind("integer", "a whole number", _integer, show=_show, numeric=True)
FLAG = Kind("flag", "true or false", _flag, show=lambda b: str(b).lower())
CHOICE = Kind("choice", "a known option", _choice, show=lambda v: str(v).lower())
LEVEL = Kind("level", "a known option", lambda v, s: _choice(v, s).upper(), show=lambda v: str(v).lower())
TEXT = Kind("text", "text", lambda v, s: v)
VERBATIM = Kind("verbatim", "text", lambda v, s: v, strip=False)  # spaces are kept; only an empty value defaults
PATH = Kind("path", "a path", lambda v, s: Path(v), show=_show)
SECRET = Kind("secret", "a secret", lambda v, s: Secret(v), show=lambda v: "")  # never written out


def hide_password(url: str) -> str:
    """A URL with its password replaced by `***` (for errors and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user, host = parts.netloc.rsplit("@", 1)
    return urlunsplit(parts._replace(netloc=f"{user.split(':', 1)[0]}:***@{host}"))


def _database_url(value: str, spec: Spec) -> Secret:
    """A PostgreSQL URL: postgresql://USER:PASSWORD@HOST:PORT/DBNAME, or a unix socket folder as ?host=/run/..."""
    parts = urlsplit(value)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError(f"the scheme must be postgresql://, not {parts.scheme + '://' if parts.scheme else 'none'}")
    try:
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError as exc:
        raise ValueError("the port must be a number") from exc
    if not (parts.hostname or "host=" in parts.query):
        raise ValueError("name the server: postgresql://USER:PASSWORD@HOST:5432/DBNAME")
    if not parts.path.strip("/"):
        raise ValueError("name the database after the host: .../DBNAME")
    return Secret(value)


DATABASE_URL = Kind(
    "database url",
    "a PostgreSQL URL",
    _database_url,
    show=lambda v: "",
    example="postgresql://kilroy:PASSWORD@localhost:5432/kilroy",
    quote=lambda v: repr(hide_password(v)),
)
IDS_EXAMPLE = "123456789012345678,234567890123456789"
IDS = Kind("ids", "a comma-separated list of Discord ids", _ids, show=_show, example=IDS_EXAMPLE)
ONE_ID = Kind("id", "a comma-separated list of Discord ids", _one_id, show=_show, example=IDS_EXAMPLE)
WORDS = Kind("words", "a comma-separated list of words", _words, show=_show)
WEIGHTS = Kind("weights", "a list of emoji=weight pairs", _weights, show=_show_weights, example="'👎=-1,❤️=2'")
TIME = Kind("time", "a time of day HH:MM", parse_time, show=lambda t: t.strftime("%H:%M"))
ZONE = Kind("zone", "an IANA time zone", _zone, example="Europe/Paris")


# --- declarations ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """One setting's declaration, held in its dataclass field's metadata: everything but the default."""

    env: str  # the variable
    kind: Kind
    help: str  # the comment above it in .env.example (one paragraph; the writer wraps it)
    lo: float | None = None  # numbers: the lowest and highest value accepted
    hi: float | None = None
    choices: tuple[str, ...] = ()  # choices: the options, lower-case
    expected: str = ""  # the error's "is not ..." when the kind's own is too vague
    example: str = ""  # the error's "set it to e.g. ..." when the default's text is no help
    shown: str | None = None  # what .env.example shows when it is not the default's text (a long or derived one)
    derive: Callable[[Mapping[str, Any]], Any] | None = None  # the default from settings read before it
    heading: str = ""  # a section title .env.example prints before it (top-level settings only)


def _infer(default: Any, choices: tuple[str, ...]) -> Kind:
    if isinstance(default, bool):
        return FLAG
    if isinstance(default, int):
        return INTEGER
    if isinstance(default, float):
        return NUMBER
    if isinstance(default, str):
        return CHOICE if choices else TEXT
    if isinstance(default, Path):
        return PATH
    if isinstance(default, dt.time):
        return TIME
    if isinstance(default, Secret):
        return SECRET
    raise TypeError(f"say which kind a default of {default!r} is (kind=...)")


def setting(
    env: str,
    default: Any,
    *,
    help: str,
    kind: Kind | None = None,
    lo: float | None = None,
    hi: float | None = None,
    choices: tuple[str, ...] = (),
    expected: str = "",
    example: str = "",
    shown: str | None = None,
    derive: Callable[[Mapping[str, Any]], Any] | None = None,
    heading: str = "",
) -> Any:
    """Declare one setting as a dataclass field: its variable, default, kind, bounds and help, in one place.

    The kind follows from the default unless given (float: a number, int: a whole number, bool: a flag, str with
    `choices`: a choice). A number must name both bounds: values past them are refused at start, naming the variable.
    """
    kind = kind or _infer(default, choices)
    if kind.numeric and (lo is None or hi is None):
        raise TypeError(f"{env}: a number needs both bounds (lo=..., hi=...)")
    if kind in (CHOICE, LEVEL) and not choices:
        raise TypeError(f"{env}: a choice needs its options (choices=...)")
    spec = Spec(env, kind, help, lo, hi, choices, expected, example, shown, derive, heading)
    if isinstance(default, dict | Secret):  # mutable or shared: each instance gets its own
        return dataclasses.field(default_factory=lambda: _copy(default), metadata={SPEC: spec})
    return dataclasses.field(default=default, metadata={SPEC: spec})


def _copy(value: Any) -> Any:
    return dict(value) if isinstance(value, dict) else Secret(value.get())


def section(cls: type, title: str) -> Any:
    """Declare a section: a dataclass of settings, its title in .env.example."""
    return dataclasses.field(default_factory=cls, metadata={SECTION: title})


def default_of(f: dataclasses.Field) -> Any:
    """The default a declared field takes when its variable is unset (before any `derive`)."""
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory()  # type: ignore[misc]


def declarations(cls: type) -> Iterator[tuple[str, dataclasses.Field, Spec]]:
    """Every setting under `cls`, in declaration order, with its attribute path ("training.kl_beta") and field."""
    for path, f, spec in walk(cls):
        if spec is not None:
            yield path, f, spec


def walk(cls: type, prefix: str = "") -> Iterator[tuple[str, dataclasses.Field, Spec | None]]:
    """Every field under `cls` in order: a section as (path, field, None) followed by its settings."""
    for f in dataclasses.fields(cls):
        path = prefix + f.name
        if SECTION in f.metadata:
            yield path, f, None
            yield from walk(f.default_factory, path + ".")  # type: ignore[arg-type]
        else:
            yield path, f, _spec(cls, f)


def _spec(cls: type, f: dataclasses.Field) -> Spec:
    if SPEC not in f.metadata:
        raise TypeError(f"{cls.__name__}.{f.name} is neither a setting nor a section: declare it with setting()")
    return f.metadata[SPEC]


# --- the reader --------------------------------------------------------------------------------------------------


def read(cls: type, env: Mapping[str, str | None]) -> Any:
    """An instance of `cls` from a mapping of variables; raise ConfigError listing every bad one."""
    reader = _Reader(env)
    value = reader.section(cls)
    if reader.problems:
        raise ConfigError(reader.problems)
    return value


def environment(env_file: str | Path | None = ".env", overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables: `env_file` (if it exists) overlaid by the process environment, then by `overrides`.

    The file is read with python-dotenv without touching `os.environ`.
    """
    from dotenv import dotenv_values

    values: dict[str, str | None] = {}
    if env_file and Path(env_file).is_file():
        values.update(dotenv_values(env_file))
    values.update(os.environ)
    values.update(overrides or {})
    return {k: v for k, v in values.items() if v is not None}


class _Reader:
    def __init__(self, env: Mapping[str, str | None]) -> None:
        self.env = {k: v for k, v in env.items() if v is not None}
        self.problems: list[str] = []

    def section(self, cls: type) -> Any:
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if SECTION in f.metadata:
                values[f.name] = self.section(f.default_factory)  # type: ignore[arg-type]
                continue
            spec = _spec(cls, f)
            default = spec.derive(values) if spec.derive else default_of(f)
            values[f.name] = self.one(spec, default)
        return cls(**values)

    def one(self, spec: Spec, default: Any) -> Any:
        value = self.env.get(spec.env)
        if value is not None and spec.kind.strip:
            value = value.strip()
        if not value:
            return default
        try:
            return spec.kind.parse(value, spec)
        except (ValueError, TypeError, ZoneInfoNotFoundError) as exc:
            detail = f" ({exc})" if str(exc) and "invalid literal" not in str(exc) else ""
            expected = spec.expected or spec.kind.expected
            example = spec.example or spec.kind.example or spec.kind.show(default)
            self.problems.append(
                f"{spec.env}={spec.kind.quote(value)} is not {expected}{detail}; set it to e.g. {example} in .env"
            )
            return default
