"""One frozen settings object, read from the environment and `.env`, validated at start.

`Settings.from_env(mapping)` is pure: `cli.py` calls it with `{**dotenv_values(".env"), **os.environ}` so that
reading `.env` never mutates the process environment. Every problem is collected and reported together, each
naming the variable, the bad value and the expected form.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import os
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

T = TypeVar("T")
MAX_WEIGHT = 100.0  # the largest |weight| an emoji or a reply may carry

DEFAULT_OPENING = (
    "It is morning, the sun is rising and it is very quiet. The lamps are on and she rearranges them for hours. "
    "She deals a deck of cards in silence."
)


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


@dataclass(frozen=True)
class ModelSettings:
    name: str = "gpt2"
    quantization: str = "auto"  # auto | 4bit | 8bit | none
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0


@dataclass(frozen=True)
class SamplingParams:
    """How to sample: the settings stored with every post (the sampling part of the generation section)."""

    temperature: float = 1.0
    top_p: float = 0.95
    top_k: int = 50
    max_new_tokens: int = 60
    repetition_penalty: float = 1.0
    # a completion never repeats a word n-gram of its own (0: off); see bot/engine/norepeat.py
    no_repeat_ngram: int = 3

    @classmethod
    def from_settings(cls, g: SamplingParams) -> SamplingParams:
        """Only the sampling fields of a generation section (which is a SamplingParams with a prompt)."""
        return cls(**{f.name: getattr(g, f.name) for f in dataclasses.fields(cls)})


@dataclass(frozen=True)
class GenerationSettings(SamplingParams):
    prompt: str = ""
    best_of: int = 8  # candidates a scheduled post draws in one batch; the reward model's favourite is sent (1: off)
    best_of_explore: float = 0.0  # share of best-of-N posts that send a random postable candidate instead


@dataclass(frozen=True)
class ScoreFormula:
    """How engagement turns into a score (the formula part of the scoring section; `bot.domain.scoring` applies it)."""

    emoji_weights: Mapping[str, float] = field(default_factory=lambda: {"👎": -1.0})
    default_emoji_weight: float = 1.0
    reply_weight: float = 2.0
    settle_hours: float = 12.0

    def weight(self, emoji: str) -> float:
        """The weight of one emoji (custom emoji are matched by their text form `<:name:id>`)."""
        return float(self.emoji_weights.get(emoji, self.default_emoji_weight))


@dataclass(frozen=True)
class ScoringSettings(ScoreFormula):
    baseline_window: int = 500


@dataclass(frozen=True)
class TrainingSettings:
    objective: str = "reinforce"  # reinforce | awr
    learning_rate: float = 3e-3
    epochs: int = 1
    batch_size: int = 16
    grad_accum: int = 1
    kl_beta: float = 0.1
    awr_temperature: float = 1.0
    min_posts: int = 8
    gate_max_kl: float = 0.3
    gate_min_diversity: float = 0.6
    gate_min_base_diversity: float = 0.85
    gate_samples: int = 256
    reward: str = "model"  # model (pooled reward model) | normalised (the night's own scores, median/MAD)
    reward_max_p: float = 0.2  # a night trains nothing unless shuffled scores fit as well as the real ones this rarely
    length_neutral: float = 1.0  # share of the rewards' positive dependence on post length removed (0..1)
    repeat_penalty: float = 2.0  # relative reward taken from a post that repeats a word trigram
    unlikelihood: float = 0.0  # weight of the unlikelihood term on tokens that repeat a trigram of their post
    reward_samples: int = 0  # extra samples of the serving adapter a night, scored by the reward model
    gate_max_repeat: float = 1.5  # candidate repeat3 at most this times the base's (floored at 0.03)
    gate_max_length: float = 1.5  # candidate mean tokens at most this times the base's
    gate_min_engagement: float = 0.0  # candidate's estimated relative engagement minus the serving one's, at least
    train_time: dt.time = dt.time(3, 30)
    timezone: str = "UTC"
    seed: int = 0
    timeout_minutes: float = 180.0


@dataclass(frozen=True)
class DiscordSettings:
    token: Secret = field(default_factory=lambda: Secret(""))
    guild_ids: tuple[int, ...] = ()
    post_channel_ids: tuple[int, ...] = ()
    post_interval_minutes: float = 60.0
    log_channel_id: int | None = None
    moderator_role_ids: tuple[int, ...] = ()
    operator_user_ids: tuple[int, ...] = ()
    operator_role_ids: tuple[int, ...] = ()
    blocklist: tuple[str, ...] = ()


@dataclass(frozen=True)
class StorySettings:
    opening: str = DEFAULT_OPENING
    max_line_chars: int = 300
    cooldown_seconds: float = 10.0
    max_new_tokens: int = 40
    retries: int = 3


@dataclass(frozen=True)
class SafetySettings:
    """Abuse, load and privacy limits (issue 12)."""

    allow_urls: bool = False  # URLs in anything Kilroy sends; invite links are always blocked
    leave_other_guilds: bool = False  # leave servers outside KILROY_GUILD_IDS instead of ignoring them
    command_cooldown_seconds: float = 3.0  # per member and command; /story line uses KILROY_STORY_COOLDOWN_SECONDS
    max_queue: int = 4  # generations waiting or running; beyond it members get "busy, try again shortly"
    retention_days: int = 90  # raw reaction events and replies of trained posts older than this are deleted; 0 = keep
    filter_retries: int = 3  # batches a scheduled post samples while the output filter refuses them, then skip


MIN_PROMPT_TOKENS = 16  # the least context a prompt keeps: max new tokens must leave at least this much


@dataclass(frozen=True)
class TrialSettings:
    """Live A/B trials of a gate-passing candidate against the serving adapter (bot/trials/sequential.py)."""

    share: float = 0.5  # 0 turns trials off: a gate-passing candidate is swapped in at once
    alpha: float = 0.05
    max_posts: int = 5000
    # guard: a gate-passing candidate serves at once, the one before it keeps `1 - share` of posts, and it is rolled
    # back if the live posts show it worse; training never waits. trial: it serves only after winning the trial,
    # and nightly training waits meanwhile
    mode: str = "guard"


@dataclass(frozen=True)
class OpsSettings:
    """Running it as a service: the HTTP server (health, metrics, dashboard), backups, log format."""

    http_host: str = "127.0.0.1"
    http_port: int | None = None  # None: no HTTP server
    dashboard_token: Secret = field(default_factory=lambda: Secret(""))  # empty: no dashboard
    backup_dir: Path | None = None  # set: a backup before each nightly training
    backup_keep: int = 7
    log_format: str = "text"  # text | json


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("data")
    db_path: Path = Path("data/kilroy.db")
    adapters_dir: Path = Path("adapters")
    log_level: str = "INFO"
    model: ModelSettings = field(default_factory=ModelSettings)
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    scoring: ScoringSettings = field(default_factory=ScoringSettings)
    training: TrainingSettings = field(default_factory=TrainingSettings)
    discord: DiscordSettings = field(default_factory=DiscordSettings)
    story: StorySettings = field(default_factory=StorySettings)
    safety: SafetySettings = field(default_factory=SafetySettings)
    trials: TrialSettings = field(default_factory=TrialSettings)
    ops: OpsSettings = field(default_factory=OpsSettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str | None]) -> Settings:
        """Build settings from a mapping of variables; raise ConfigError listing every bad one."""
        return _Reader(env).build()

    def replace(self, **changes: Any) -> Settings:
        """Return a copy with top-level fields changed."""
        return dataclasses.replace(self, **changes)

    def check_context(self, context_size: int) -> None:
        """Raise ConfigError if the token budgets do not fit the loaded model's context (known only after loading)."""
        problems = []
        room = context_size - MIN_PROMPT_TOKENS
        for name, value in (
            ("KILROY_MAX_NEW_TOKENS", self.generation.max_new_tokens),
            ("KILROY_STORY_MAX_NEW_TOKENS", self.story.max_new_tokens),
        ):
            if value > room:
                problems.append(
                    f"{name}={value} leaves no room for a prompt in this model's {context_size}-token context; "
                    f"set it to at most {room} (context minus {MIN_PROMPT_TOKENS} prompt tokens) in .env"
                )
        if problems:
            raise ConfigError(problems)

    def to_json(self) -> dict[str, Any]:
        """Every setting as plain JSON, secrets left out: how the settings travel whole to a child process."""
        return {f.name: _encode(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Settings:
        """The inverse of `to_json` (secrets come back empty); unknown keys are an error, missing ones default."""
        return _decode(cls(), data)


def load_settings(env_file: str | Path | None = ".env", overrides: Mapping[str, str] | None = None) -> Settings:
    """Settings from `env_file` (if it exists) overlaid by the process environment, then by `overrides`.

    The file is read with python-dotenv without touching `os.environ`.
    """
    from dotenv import dotenv_values

    values: dict[str, str | None] = {}
    if env_file and Path(env_file).is_file():
        values.update(dotenv_values(env_file))
    values.update(os.environ)
    values.update(overrides or {})
    return Settings.from_env(values)


def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Secret):
        return None  # never serialised
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dt.time):
        return value.strftime("%H:%M")
    if isinstance(value, tuple | list):
        return [_encode(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _encode(v) for k, v in value.items()}
    return value


def _decode(template: Any, data: Any) -> Any:
    """Rebuild a value shaped like `template` (a default instance) from its JSON form."""
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
                changes[k] = _decode(default, v)
        return dataclasses.replace(template, **changes)
    if isinstance(template, Secret):
        return Secret("")
    if isinstance(template, Path):
        return Path(data)
    if isinstance(template, dt.time):
        return _parse_time(data)
    if isinstance(template, tuple):
        return tuple(data)
    if isinstance(template, Mapping):
        return dict(data)
    if isinstance(template, float) and isinstance(data, int):
        return float(data)
    return data


# ---------------------------------------------------------------------------------------------------------------------


class _Reader:
    def __init__(self, env: Mapping[str, str | None]) -> None:
        self.env = {k: v for k, v in env.items() if v is not None}
        self.problems: list[str] = []

    def raw(self, name: str) -> str | None:
        value = self.env.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def get(self, name: str, default: T, parse: Callable[[str], T], expected: str, example: str) -> T:
        value = self.raw(name)
        if value is None:
            return default
        try:
            return parse(value)
        except (ValueError, TypeError, ZoneInfoNotFoundError) as exc:
            detail = f" ({exc})" if str(exc) and "invalid literal" not in str(exc) else ""
            self.problems.append(f"{name}={value!r} is not {expected}{detail}; set it to e.g. {example} in .env")
            return default

    def number(self, name: str, default: float, *, low: float | None = None, high: float | None = None) -> float:
        def parse(v: str) -> float:
            x = float(v)
            if not math.isfinite(x):
                raise ValueError("must be a finite number")
            _bounded(x, low, high)
            return x

        return self.get(name, default, parse, "a number", str(default))

    def integer(self, name: str, default: int, *, low: int | None = None, high: int | None = None) -> int:
        def parse(v: str) -> int:
            x = int(v)
            _bounded(x, low, high)
            return x

        return self.get(name, default, parse, "a whole number", str(default))

    def flag(self, name: str, default: bool) -> bool:
        def parse(v: str) -> bool:
            if v.lower() in ("1", "true", "yes", "on"):
                return True
            if v.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError("use true or false")

        return self.get(name, default, parse, "true or false", str(default).lower())

    def ids(self, name: str) -> tuple[int, ...]:
        def parse(v: str) -> tuple[int, ...]:
            parts = [p for p in re.split(r"[,\s]+", v) if p]
            if not all(p.isdigit() for p in parts):
                raise ValueError("Discord ids are digits only")
            return tuple(int(p) for p in parts)

        return self.get(
            name, (), parse, "a comma-separated list of Discord ids", "123456789012345678,234567890123456789"
        )

    def choice(self, name: str, default: str, options: tuple[str, ...]) -> str:
        def parse(v: str) -> str:
            if v.lower() not in options:
                raise ValueError(f"choose one of {', '.join(options)}")
            return v.lower()

        return self.get(name, default, parse, "a known option", options[0])

    def build(self) -> Settings:
        d = Settings()
        data_dir = Path(self.raw("KILROY_DATA_DIR") or d.data_dir)
        db_raw = self.raw("KILROY_DB_PATH")
        model = ModelSettings(
            name=self.raw("KILROY_MODEL") or d.model.name,
            quantization=self.choice("KILROY_QUANTIZATION", "auto", ("auto", "4bit", "8bit", "none")),
            lora_rank=self.integer("KILROY_LORA_RANK", d.model.lora_rank, low=1, high=256),
            lora_alpha=self.integer("KILROY_LORA_ALPHA", d.model.lora_alpha, low=1, high=1024),
            lora_dropout=self.number("KILROY_LORA_DROPOUT", d.model.lora_dropout, low=0, high=0.9),
        )
        g = d.generation
        generation = GenerationSettings(
            temperature=self.number("KILROY_TEMPERATURE", g.temperature, low=0.05, high=5),
            top_p=self.number("KILROY_TOP_P", g.top_p, low=0.01, high=1),
            top_k=self.integer("KILROY_TOP_K", g.top_k, low=0, high=100_000),
            max_new_tokens=self.integer("KILROY_MAX_NEW_TOKENS", g.max_new_tokens, low=1, high=1024),
            repetition_penalty=self.number("KILROY_REPETITION_PENALTY", g.repetition_penalty, low=0.5, high=3),
            no_repeat_ngram=self.integer("KILROY_NO_REPEAT_NGRAM", g.no_repeat_ngram, low=0, high=16),
            prompt=self.env.get("KILROY_POST_PROMPT", g.prompt) or "",
            best_of=self.integer("KILROY_BEST_OF", g.best_of, low=1, high=64),
            best_of_explore=self.number("KILROY_BEST_OF_EXPLORE", g.best_of_explore, low=0, high=1),
        )
        s = d.scoring
        scoring = ScoringSettings(
            emoji_weights=self.get(
                "KILROY_EMOJI_WEIGHTS", s.emoji_weights, _parse_weights, "a list of emoji=weight pairs", "'👎=-1,❤️=2'"
            ),
            default_emoji_weight=self.number(
                "KILROY_DEFAULT_EMOJI_WEIGHT", s.default_emoji_weight, low=-MAX_WEIGHT, high=MAX_WEIGHT
            ),
            reply_weight=self.number("KILROY_REPLY_WEIGHT", s.reply_weight, low=-MAX_WEIGHT, high=MAX_WEIGHT),
            settle_hours=self.number("KILROY_SETTLE_HOURS", s.settle_hours, low=0, high=24 * 30),
            baseline_window=self.integer("KILROY_BASELINE_WINDOW", s.baseline_window, low=2, high=1_000_000),
        )
        t = d.training
        training = TrainingSettings(
            objective=self.choice("KILROY_OBJECTIVE", t.objective, ("reinforce", "awr")),
            learning_rate=self.number("KILROY_LEARNING_RATE", t.learning_rate, low=0, high=1),
            epochs=self.integer("KILROY_EPOCHS", t.epochs, low=1, high=100),
            batch_size=self.integer("KILROY_BATCH_SIZE", t.batch_size, low=1, high=1024),
            grad_accum=self.integer("KILROY_GRAD_ACCUM", t.grad_accum, low=1, high=1024),
            kl_beta=self.number("KILROY_KL_BETA", t.kl_beta, low=0, high=100),
            awr_temperature=self.number("KILROY_AWR_TEMPERATURE", t.awr_temperature, low=0.01, high=100),
            min_posts=self.integer("KILROY_MIN_TRAIN_POSTS", t.min_posts, low=1, high=1_000_000),
            gate_max_kl=self.number("KILROY_GATE_MAX_KL", t.gate_max_kl, low=0, high=1000),
            gate_min_diversity=self.number("KILROY_GATE_MIN_DIVERSITY", t.gate_min_diversity, low=0, high=1),
            gate_min_base_diversity=self.number(
                "KILROY_GATE_MIN_BASE_DIVERSITY", t.gate_min_base_diversity, low=0, high=1
            ),
            gate_samples=self.integer("KILROY_GATE_SAMPLES", t.gate_samples, low=2, high=4096),
            reward=self.choice("KILROY_REWARD", t.reward, ("model", "normalised")),
            reward_max_p=self.number("KILROY_REWARD_MAX_P", t.reward_max_p, low=0, high=1),
            length_neutral=self.number("KILROY_LENGTH_NEUTRAL", t.length_neutral, low=0, high=1),
            repeat_penalty=self.number("KILROY_REPEAT_PENALTY", t.repeat_penalty, low=0),
            unlikelihood=self.number("KILROY_UNLIKELIHOOD", t.unlikelihood, low=0),
            reward_samples=self.integer("KILROY_REWARD_SAMPLES", t.reward_samples, low=0),
            gate_max_repeat=self.number("KILROY_GATE_MAX_REPEAT", t.gate_max_repeat, low=0),
            gate_max_length=self.number("KILROY_GATE_MAX_LENGTH", t.gate_max_length, low=0),
            gate_min_engagement=self.number("KILROY_GATE_MIN_ENGAGEMENT", t.gate_min_engagement),
            train_time=self.get("KILROY_TRAIN_TIME", t.train_time, _parse_time, "a time of day HH:MM", "03:30"),
            timezone=self.get("KILROY_TIMEZONE", t.timezone, _parse_zone, "an IANA time zone", "Europe/Paris"),
            seed=self.integer("KILROY_SEED", t.seed, low=0, high=2**32 - 1),
            timeout_minutes=self.number("KILROY_TRAIN_TIMEOUT_MINUTES", t.timeout_minutes, low=0.01, high=7 * 24 * 60),
        )
        ds = d.discord
        log_channel = self.ids("KILROY_LOG_CHANNEL_ID")
        discord = DiscordSettings(
            token=Secret(self.raw("DISCORD_TOKEN") or ""),
            guild_ids=self.ids("KILROY_GUILD_IDS"),
            post_channel_ids=self.ids("KILROY_POST_CHANNEL_IDS"),
            post_interval_minutes=self.number(
                "KILROY_POST_INTERVAL_MINUTES", ds.post_interval_minutes, low=1, high=7 * 24 * 60
            ),
            log_channel_id=log_channel[0] if log_channel else None,
            moderator_role_ids=self.ids("KILROY_MODERATOR_ROLE_IDS"),
            operator_user_ids=self.ids("KILROY_OPERATOR_USER_IDS"),
            operator_role_ids=self.ids("KILROY_OPERATOR_ROLE_IDS"),
            blocklist=tuple(w.strip().lower() for w in (self.raw("KILROY_BLOCKLIST") or "").split(",") if w.strip()),
        )
        st = d.story
        story = StorySettings(
            opening=self.raw("KILROY_STORY_OPENING") or st.opening,
            max_line_chars=self.integer("KILROY_STORY_MAX_LINE_CHARS", st.max_line_chars, low=1, high=1500),
            cooldown_seconds=self.number("KILROY_STORY_COOLDOWN_SECONDS", st.cooldown_seconds, low=0, high=3600),
            max_new_tokens=self.integer("KILROY_STORY_MAX_NEW_TOKENS", st.max_new_tokens, low=1, high=1024),
            retries=self.integer("KILROY_STORY_RETRIES", st.retries, low=1, high=10),
        )
        sa = d.safety
        safety = SafetySettings(
            allow_urls=self.flag("KILROY_ALLOW_URLS", sa.allow_urls),
            leave_other_guilds=self.flag("KILROY_LEAVE_OTHER_GUILDS", sa.leave_other_guilds),
            command_cooldown_seconds=self.number(
                "KILROY_COMMAND_COOLDOWN_SECONDS", sa.command_cooldown_seconds, low=0, high=3600
            ),
            max_queue=self.integer("KILROY_MAX_QUEUE", sa.max_queue, low=1, high=1000),
            retention_days=self.integer("KILROY_RETENTION_DAYS", sa.retention_days, low=0, high=3650),
            filter_retries=self.integer("KILROY_FILTER_RETRIES", sa.filter_retries, low=1, high=10),
        )
        tr = d.trials
        trials = TrialSettings(
            share=self.number("KILROY_AB_SHARE", tr.share, low=0, high=0.95),
            alpha=self.number("KILROY_AB_ALPHA", tr.alpha, low=0.001, high=0.5),
            max_posts=self.integer("KILROY_AB_MAX_POSTS", tr.max_posts, low=10),
            mode=self.choice("KILROY_AB_MODE", tr.mode, ("guard", "trial")),
        )
        port = self.get("KILROY_HTTP_PORT", None, _parse_port, "a TCP port (1-65535)", "8080")
        backup_dir = self.raw("KILROY_BACKUP_DIR")
        ops = OpsSettings(
            http_host=self.raw("KILROY_HTTP_HOST") or OpsSettings.http_host,
            http_port=port,
            dashboard_token=Secret(self.raw("KILROY_DASHBOARD_TOKEN") or ""),
            backup_dir=Path(backup_dir) if backup_dir else None,
            backup_keep=self.integer("KILROY_BACKUP_KEEP", OpsSettings.backup_keep, low=1),
            log_format=self.choice("KILROY_LOG_FORMAT", "text", ("text", "json")),
        )
        log_level = self.choice("KILROY_LOG_LEVEL", "info", ("debug", "info", "warning", "error")).upper()
        if self.problems:
            raise ConfigError(self.problems)
        return Settings(
            data_dir=data_dir,
            db_path=Path(db_raw) if db_raw else data_dir / "kilroy.db",
            adapters_dir=Path(self.raw("KILROY_ADAPTERS_DIR") or d.adapters_dir),
            log_level=log_level,
            model=model,
            generation=generation,
            scoring=scoring,
            training=training,
            discord=discord,
            story=story,
            safety=safety,
            trials=trials,
            ops=ops,
        )


def _bounded(x: float, low: float | None, high: float | None) -> None:
    if (low is not None and x < low) or (high is not None and x > high):
        if high is None:
            raise ValueError(f"must be at least {low}")
        if low is None:
            raise ValueError(f"must be at most {high}")
        raise ValueError(f"must be between {low} and {high}")


def emoji_key(emoji: str) -> str:
    """How an emoji is keyed in votes and weights: unicode as itself, a custom one as `<:name:id>` without the
    animated flag (`<a:name:id>`), which Discord has sent inconsistently (left out of removal events until mid-2023,
    reported unreliable on adds: discord-api-docs #812, #6135): a flagged add whose removal came without it stayed."""
    return "<:" + emoji[3:] if emoji.startswith("<a:") else emoji


def _parse_weights(value: str) -> dict[str, float]:
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


def _parse_port(value: str) -> int:
    port = int(value)
    if not 1 <= port <= 65535:
        raise ValueError("must be between 1 and 65535")
    return port


def _parse_time(value: str) -> dt.time:
    hour, _, minute = value.partition(":")
    return dt.time(int(hour), int(minute or 0))


def _parse_zone(value: str) -> str:
    ZoneInfo(value)
    return value
