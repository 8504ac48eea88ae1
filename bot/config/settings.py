"""Every setting, declared once: its attribute, variable, default, kind, bounds and help, in one frozen object.

To add a setting, add one line to its section below, for example
    kl_beta: float = setting("KILROY_KL_BETA", 0.1, lo=0, hi=100, help="Weight of the KL penalty ...")
then run `python -m bot.config.example > .env.example` (tests/config fails until the file matches). The reader
(`bot/config/env.py`), the JSON codec for the training worker (`bot/config/codec.py`) and `.env.example` all follow
the declarations. The kind comes from the default (float, int, bool, str with `choices`, Path, time) unless given
(`kind=IDS`, ...); a number must name both bounds, a range a real deployment never needs to leave.

`Settings.from_env(mapping)` is pure: `load_settings` calls it with `.env` overlaid by the process environment, so
reading `.env` never mutates the process environment. Every problem is collected and reported together, each
naming the variable, the bad value and the expected form.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.config import codec
from bot.config.env import (
    DATABASE_URL,
    IDS,
    INTEGER,
    LEVEL,
    MAX_WEIGHT,
    ONE_ID,
    PATH,
    SHARD_IDS,
    VERBATIM,
    WEIGHTS,
    WORDS,
    ZONE,
    ConfigError,
    Secret,
    emoji_key,
    environment,
    hide_password,
    read,
    section,
    setting,
)

__all__ = [
    "DEFAULT_OPENING",
    "MAX_WEIGHT",
    "MIN_PROMPT_TOKENS",
    "ConfigError",
    "DiscordSettings",
    "GenerationSettings",
    "ModelSettings",
    "OpsSettings",
    "SafetySettings",
    "SamplingParams",
    "ScoreFormula",
    "ScoringSettings",
    "Secret",
    "Settings",
    "ShardSettings",
    "StorySettings",
    "TrainingSettings",
    "TrialSettings",
    "emoji_key",
    "load_settings",
]

DEFAULT_OPENING = (
    "It is morning, the sun is rising and it is very quiet. The lamps are on and she rearranges them for hours. "
    "She deals a deck of cards in silence."
)
MIN_PROMPT_TOKENS = 16  # the least context a prompt keeps: max new tokens must leave at least this much
WEEK_MINUTES = 7 * 24 * 60
DASHBOARD_TOKEN_MIN_CHARS = 32  # shorter tokens are guessable; refused at start


@dataclass(frozen=True)
class DiscordSettings:
    token: Secret = setting(
        "DISCORD_TOKEN",
        Secret(""),
        help="The bot token from https://discord.com/developers/applications (Bot -> Reset Token). "
        "Never share or commit it.",
    )
    guild_ids: tuple[int, ...] = setting(
        "KILROY_GUILD_IDS",
        (),
        kind=IDS,
        help="The servers Kilroy works in (comma-separated ids): commands are synced there instantly, and in any "
        "other server Kilroy answers nothing and records nothing. Empty = every server (global sync; can take up "
        "to an hour).",
    )
    post_channel_ids: tuple[int, ...] = setting(
        "KILROY_POST_CHANNEL_IDS",
        (),
        kind=IDS,
        help="Channels the bot posts generated text into (comma-separated ids).",
    )
    post_interval_minutes: float = setting(
        "KILROY_POST_INTERVAL_MINUTES",
        60.0,
        lo=1,
        hi=WEEK_MINUTES,
        help="Minutes between scheduled posts per channel (a little random jitter is added).",
    )
    log_channel_id: int | None = setting(
        "KILROY_LOG_CHANNEL_ID",
        None,
        kind=ONE_ID,
        help="Channel for a short summary after each nightly training run and the audit trail of /retrain and "
        "/adapter (optional).",
    )
    log_channel_ids: tuple[int, ...] = setting(
        "KILROY_LOG_CHANNEL_IDS",
        (),
        kind=IDS,
        help="Per-server log channels (comma-separated ids, one per server): a server's training results, A/B "
        "trials and audit lines go to the one in that server; servers without one use KILROY_LOG_CHANNEL_ID.",
    )
    moderator_role_ids: tuple[int, ...] = setting(
        "KILROY_MODERATOR_ROLE_IDS",
        (),
        kind=IDS,
        help="Roles allowed to run /retrain (members with Manage Server can always).",
    )
    operator_user_ids: tuple[int, ...] = setting(
        "KILROY_OPERATOR_USER_IDS",
        (),
        kind=IDS,
        help="Users allowed to manage adapters with /adapter (the application owner always can).",
    )
    operator_role_ids: tuple[int, ...] = setting(
        "KILROY_OPERATOR_ROLE_IDS", (), kind=IDS, help="Roles allowed to manage adapters with /adapter."
    )
    blocklist: tuple[str, ...] = setting(
        "KILROY_BLOCKLIST",
        (),
        kind=WORDS,
        help="Words that must never appear in anything Kilroy sends (comma-separated, case-insensitive): generated "
        "text with one is resampled, a member's line with one is refused.",
    )


@dataclass(frozen=True)
class ModelSettings:
    name: str = setting(
        "KILROY_MODEL",
        "gpt2",
        help="Hub id (gpt2), a local folder, or tiny (a small GPT-2 the project builds offline; tiny:test is smaller "
        "still).",
    )
    quantization: str = setting(
        "KILROY_QUANTIZATION",
        "auto",
        choices=("auto", "4bit", "8bit", "none"),
        help="auto (4-bit NF4 on CUDA; on CPU full precision, measured fastest there), 4bit, 8bit or none. 4bit and "
        "8bit run on CPU and CUDA wherever the installed bitsandbytes does (0.50.2 does both); `kilroy doctor` says "
        "what auto picks.",
    )
    lora_rank: int = setting("KILROY_LORA_RANK", 8, lo=1, hi=256, help="LoRA rank of new adapters.")
    lora_alpha: int = setting("KILROY_LORA_ALPHA", 16, lo=1, hi=1024, help="LoRA alpha of new adapters.")
    lora_dropout: float = setting("KILROY_LORA_DROPOUT", 0.0, lo=0, hi=0.9, help="LoRA dropout of new adapters.")
    max_resident_adapters: int = setting(
        "KILROY_MAX_RESIDENT_ADAPTERS",
        8,
        lo=1,
        hi=256,
        help="Adapters kept loaded in memory at once (each community's serving adapter, the commons, trial arms); "
        "the least recently used one goes first and is reloaded from disk when next needed. Adapters a running "
        "trial or an in-flight batch needs are never evicted. About 5 MB each at rank 8 on GPT-2's 124M shape.",
    )


@dataclass(frozen=True)
class SamplingParams:
    """How to sample: the settings stored with every post (the sampling part of the generation section)."""

    temperature: float = setting("KILROY_TEMPERATURE", 1.0, lo=0.05, hi=5, help="Sampling temperature.")
    top_p: float = setting("KILROY_TOP_P", 0.95, lo=0.01, hi=1, help="Nucleus sampling: the top-p mass kept.")
    top_k: int = setting("KILROY_TOP_K", 50, lo=0, hi=100_000, help="Top-k sampling; 0 disables it.")
    max_new_tokens: int = setting("KILROY_MAX_NEW_TOKENS", 60, lo=1, hi=1024, help="Most tokens a post samples.")
    repetition_penalty: float = setting(
        "KILROY_REPETITION_PENALTY", 1.0, lo=0.5, hi=3, help="Repetition penalty of sampling (1 = none)."
    )
    # a completion never repeats a word n-gram of its own (0: off); see bot/engine/norepeat.py
    no_repeat_ngram: int = setting(
        "KILROY_NO_REPEAT_NGRAM",
        3,
        lo=0,
        hi=16,
        help='A post never repeats a run of this many of its own words ("the best combo ... the best combo"); '
        "0 disables.",
    )

    @classmethod
    def from_settings(cls, g: SamplingParams) -> SamplingParams:
        """Only the sampling fields of a generation section (which is a SamplingParams with a prompt)."""
        return cls(**{f.name: getattr(g, f.name) for f in dataclasses.fields(cls)})


@dataclass(frozen=True)
class GenerationSettings(SamplingParams):
    prompt: str = setting(
        "KILROY_POST_PROMPT", "", kind=VERBATIM, help="Text every post starts from (empty: posts start from nothing)."
    )
    best_of: int = setting(
        "KILROY_BEST_OF",
        8,
        lo=1,
        hi=64,
        help="Best-of-N at posting time: draw N candidates in one batch and send the one the nightly reward model "
        "scores highest, less the novelty term (every candidate is recorded and trained on). 1 = off (the first "
        "postable of two draws). 8 with novelty 1.0 measured best of what keeps posts varied (README, 'Best-of-N').",
    )
    best_of_explore: float = setting(
        "KILROY_BEST_OF_EXPLORE",
        0.0,
        lo=0,
        hi=1,
        help="Share of best-of-N posts that send a random postable candidate instead of the reward model's pick.",
    )
    best_of_novelty: float = setting(
        "KILROY_BEST_OF_NOVELTY",
        1.0,
        lo=0,
        hi=10,
        help="Best-of-N's novelty weight: each candidate's predicted score loses this x its share of word bigrams "
        "already in the channel's last 64 posts (x the batch's mean prediction), so picks do not converge on the "
        "same phrases (without it best-of-8 cut distinct-2 to 53-61% of the start; with 1.0, 83-91%). 0 = off.",
    )


@dataclass(frozen=True)
class ScoreFormula:
    """How engagement turns into a score (the formula part of the scoring section; `bot.domain.scoring` applies it)."""

    emoji_weights: Mapping[str, float] = setting(
        "KILROY_EMOJI_WEIGHTS",
        {"👎": -1.0},
        kind=WEIGHTS,
        help="Weights of particular emoji (emoji=weight, comma-separated; a custom one as <:name:id>), each between "
        f"-{MAX_WEIGHT:g} and {MAX_WEIGHT:g}; others weigh KILROY_DEFAULT_EMOJI_WEIGHT.",
    )
    default_emoji_weight: float = setting(
        "KILROY_DEFAULT_EMOJI_WEIGHT", 1.0, lo=-MAX_WEIGHT, hi=MAX_WEIGHT, help="Weight of any other emoji."
    )
    reply_weight: float = setting(
        "KILROY_REPLY_WEIGHT", 2.0, lo=-MAX_WEIGHT, hi=MAX_WEIGHT, help="Added once per member who replies to a post."
    )
    settle_hours: float = setting(
        "KILROY_SETTLE_HOURS",
        12.0,
        lo=0,
        hi=24 * 30,
        help="Hours after posting before a post's score is final and it can be trained on.",
    )

    def weight(self, emoji: str) -> float:
        """The weight of one emoji (custom emoji are matched by their text form `<:name:id>`)."""
        return float(self.emoji_weights.get(emoji, self.default_emoji_weight))


@dataclass(frozen=True)
class ScoringSettings(ScoreFormula):
    baseline_window: int = setting(
        "KILROY_BASELINE_WINDOW",
        500,
        lo=2,
        hi=1_000_000,
        help="How many recent settled posts (all channels together) the reward model is fit on; channel baselines "
        "come from them.",
    )


@dataclass(frozen=True)
class TrainingSettings:
    objective: str = setting(
        "KILROY_OBJECTIVE",
        "reinforce",
        choices=("reinforce", "awr"),
        help="reinforce (signed policy gradient) or awr (advantage-weighted likelihood).",
    )
    learning_rate: float = setting("KILROY_LEARNING_RATE", 3e-3, lo=0, hi=1, help="Learning rate of the adapter.")
    epochs: int = setting("KILROY_EPOCHS", 1, lo=1, hi=100, help="Passes over a night's posts.")
    batch_size: int = setting("KILROY_BATCH_SIZE", 16, lo=1, hi=1024, help="Posts per training batch.")
    grad_accum: int = setting(
        "KILROY_GRAD_ACCUM", 1, lo=1, hi=1024, help="Batches whose gradients are summed before each optimizer step."
    )
    kl_beta: float = setting(
        "KILROY_KL_BETA", 0.1, lo=0, hi=100, help="Weight of the KL penalty that anchors the adapter to the base model."
    )
    awr_temperature: float = setting(
        "KILROY_AWR_TEMPERATURE", 1.0, lo=0.01, hi=100, help="Temperature of the awr weights exp(advantage / t)."
    )
    min_posts: int = setting(
        "KILROY_MIN_TRAIN_POSTS",
        8,
        lo=1,
        hi=1_000_000,
        help="A run needs at least this many settled, untrained posts.",
    )
    commons: str = setting(
        "KILROY_COMMONS",
        "opt-out",
        choices=("opt-in", "opt-out", "off"),
        help="The commons, the shared adapter that serves new and quiet servers, trains on the pooled posts of: every "
        "server unless its admin leaves (opt-out), only servers whose admin joins (opt-in), or none (off: no commons). "
        "An admin changes it for their server with /commons. Only the bot's own posts and their reactions are pooled.",
    )
    community_min_posts: int = setting(
        "KILROY_COMMUNITY_MIN_POSTS",
        64,
        lo=0,
        hi=1_000_000,
        help="A server is served by the commons until it has this many settled posts of its own and its own gate "
        "has passed; its own training starts then, from the commons.",
    )
    gate_max_kl: float = setting(
        "KILROY_GATE_MAX_KL", 0.3, lo=0, hi=1000, help="Gate: largest per-token KL to the base allowed for promotion."
    )
    gate_min_diversity: float = setting(
        "KILROY_GATE_MIN_DIVERSITY",
        0.6,
        lo=0,
        hi=1,
        help="Gate: the new adapter's distinct-2 must be at least this fraction of the serving adapter's.",
    )
    gate_min_base_diversity: float = setting(
        "KILROY_GATE_MIN_BASE_DIVERSITY",
        0.85,
        lo=0,
        hi=1,
        help="Gate: ... and at least this fraction of the base model's (so small nightly losses cannot compound).",
    )
    gate_samples: int = setting(
        "KILROY_GATE_SAMPLES", 256, lo=2, hi=4096, help="Gate: fresh samples drawn to evaluate a candidate."
    )
    reward: str = setting(
        "KILROY_REWARD",
        "model",
        choices=("model", "normalised"),
        help="Rewards: model (a reward model over all settled history, pooled across nights) or normalised (each "
        "night's own scores, median/MAD-normalised: the older recipe, which follows noise).",
    )
    reward_max_p: float = setting(
        "KILROY_REWARD_MAX_P",
        0.2,
        lo=0,
        hi=1,
        help="A night trains nothing unless the reward model beats shuffled scores (permutation p-value at most "
        "this): otherwise its rewards would be noise. 1 trains every night.",
    )
    length_neutral: float = setting(
        "KILROY_LENGTH_NEUTRAL",
        1.0,
        lo=0,
        hi=1,
        help="Share of the rewards' preference for longer posts removed, so training does not make posts long-winded.",
    )
    repeat_penalty: float = setting(
        "KILROY_REPEAT_PENALTY",
        2.0,
        lo=0,
        hi=100,
        help="Relative reward taken from a post that repeats a word trigram (a template loop).",
    )
    unlikelihood: float = setting(
        "KILROY_UNLIKELIHOOD",
        0.0,
        lo=0,
        hi=100,
        help="Weight of the unlikelihood term that pushes down tokens repeating a token trigram of their own post.",
    )
    reward_samples: int = setting(
        "KILROY_REWARD_SAMPLES",
        0,
        lo=0,
        hi=4096,
        help="Extra samples of the serving adapter a night, scored by the reward model and trained on with the posts.",
    )
    gate_max_repeat: float = setting(
        "KILROY_GATE_MAX_REPEAT",
        1.5,
        lo=0,
        hi=100,
        help="Gate: the candidate's repeat3 (share of posts repeating a word trigram) at most this times the base's "
        "(floored at 0.03).",
    )
    gate_max_length: float = setting(
        "KILROY_GATE_MAX_LENGTH",
        1.5,
        lo=0,
        hi=100,
        help="Gate: the candidate's mean post length in tokens at most this times the base's.",
    )
    # -100 lets any estimate through (the tests' open gate); above +1 ("twice the serving adapter's") nothing passes
    gate_min_engagement: float = setting(
        "KILROY_GATE_MIN_ENGAGEMENT",
        0.0,
        lo=-100,
        hi=1,
        help="Gate: the candidate's estimated engagement (reward model) minus the serving adapter's, at least "
        "(relative to the usual engagement: -0.05 lets through a candidate estimated 5% below the serving one).",
    )
    train_time: dt.time = setting(
        "KILROY_TRAIN_TIME", dt.time(3, 30), help="Nightly training time (HH:MM), in KILROY_TIMEZONE."
    )
    timezone: str = setting("KILROY_TIMEZONE", "UTC", kind=ZONE, help="Time zone of KILROY_TRAIN_TIME.")
    seed: int = setting("KILROY_SEED", 0, lo=0, hi=2**32 - 1, help="Random seed of the nightly training.")
    timeout_minutes: float = setting(
        "KILROY_TRAIN_TIMEOUT_MINUTES",
        180.0,
        lo=0.01,
        hi=WEEK_MINUTES,
        help="A training worker still running after this many minutes is killed and the run recorded as timed out.",
    )
    budget_minutes: float = setting(
        "KILROY_TRAIN_BUDGET_MINUTES",
        240.0,
        lo=0.01,
        hi=WEEK_MINUTES,
        help="A night trains one server after another (most new settled posts first) until this many minutes have "
        "passed; a server that does not fit waits for the next night.",
    )
    queue: str = setting(
        "KILROY_TRAINING_QUEUE",
        "local",
        choices=("local", "postgres"),
        help="local: train in a worker process beside the bot. postgres: the bot enqueues training jobs in "
        "KILROY_DATABASE_URL (procrastinate) and `kilroy worker` processes, here or on a GPU machine sharing "
        "KILROY_ADAPTERS_DIR, run them (README: Training on another machine).",
    )
    stalled_seconds: float = setting(
        "KILROY_WORKER_STALLED_SECONDS",
        60.0,
        lo=2,
        hi=3600,
        help="A `kilroy worker` silent (no heartbeat) this long is taken for dead: its job is retried once.",
    )


@dataclass(frozen=True)
class StorySettings:
    opening: str = setting(
        "KILROY_STORY_OPENING",
        DEFAULT_OPENING,
        shown="",
        help='The opening of a new story (default: "It is morning, the sun is rising and it is very quiet. ...").',
    )
    max_line_chars: int = setting(
        "KILROY_STORY_MAX_LINE_CHARS", 300, lo=1, hi=1500, help="Longest story line a member may add, in characters."
    )
    cooldown_seconds: float = setting(
        "KILROY_STORY_COOLDOWN_SECONDS", 10.0, lo=0, hi=3600, help="Seconds a member waits between two lines."
    )
    max_new_tokens: int = setting(
        "KILROY_STORY_MAX_NEW_TOKENS", 40, lo=1, hi=1024, help="Most tokens a machine line of a story samples."
    )
    retries: int = setting(
        "KILROY_STORY_RETRIES", 3, lo=1, hi=10, help="Attempts before an empty machine answer is reported."
    )


@dataclass(frozen=True)
class SafetySettings:
    """Abuse, load and privacy limits."""

    allow_urls: bool = setting(
        "KILROY_ALLOW_URLS",
        False,
        help="Allow links in what Kilroy sends (generated text and echoed lines). Invite links are always blocked.",
    )
    leave_other_guilds: bool = setting(
        "KILROY_LEAVE_OTHER_GUILDS",
        False,
        help="Leave a server that is not in KILROY_GUILD_IDS when invited there (false: stay, but answer and record "
        "nothing).",
    )
    command_cooldown_seconds: float = setting(
        "KILROY_COMMAND_COOLDOWN_SECONDS",
        3.0,
        lo=0,
        hi=3600,
        help="Seconds a member waits between two uses of the same command (/story line uses "
        "KILROY_STORY_COOLDOWN_SECONDS).",
    )
    max_queue: int = setting(
        "KILROY_MAX_QUEUE",
        4,
        lo=1,
        hi=1000,
        help='Generations waiting or running at once; beyond it members are told "busy, try again shortly".',
    )
    retention_days: int = setting(
        "KILROY_RETENTION_DAYS",
        90,
        lo=0,
        hi=3650,
        help="Days to keep raw reaction events and replies once their post was trained on (0 = keep forever).",
    )
    filter_retries: int = setting(
        "KILROY_FILTER_RETRIES",
        3,
        lo=1,
        hi=10,
        help="Batches of two samples a scheduled post draws when the output filter refuses them, before it is "
        "skipped (story answers: KILROY_STORY_RETRIES).",
    )


@dataclass(frozen=True)
class TrialSettings:
    """Live A/B trials of a gate-passing candidate against the serving adapter (bot/trials/sequential.py)."""

    share: float = setting(
        "KILROY_AB_SHARE",
        0.5,
        lo=0,
        hi=0.95,
        help="Share of posts written by a gate-passing candidate during its live trial against the serving adapter "
        "(0 turns trials off: a candidate that passes the gate is swapped in at once).",
    )
    alpha: float = setting(
        "KILROY_AB_ALPHA",
        0.05,
        lo=0.001,
        hi=0.5,
        help="False-promotion rate of the trial's sequential test: a candidate no better than the serving adapter "
        "is promoted with at most this probability, however often the test is checked.",
    )
    max_posts: int = setting(
        "KILROY_AB_MAX_POSTS",
        5000,
        lo=10,
        hi=1_000_000,
        help="Futility stop: settled trial posts after which an undecided trial ends and the serving adapter stays.",
    )
    mode: str = setting(
        "KILROY_AB_MODE",
        "guard",
        choices=("guard", "trial"),
        help="guard: a gate-passing candidate serves at once, the adapter before it keeps 1 - KILROY_AB_SHARE of the "
        "posts, and it is rolled back if the live posts show it worse; nightly training never waits. trial: it "
        "serves only after winning a superiority trial, and nightly training waits meanwhile.",
    )


@dataclass(frozen=True)
class OpsSettings:
    """Running it as a service: the HTTP server (health, metrics, dashboard), backups, log format."""

    http_host: str = setting(
        "KILROY_HTTP_HOST",
        "127.0.0.1",
        help="Address of the HTTP server inside `kilroy run` (/healthz, /metrics for Prometheus, the dashboard at "
        "/); 127.0.0.1 keeps it local (0.0.0.0 inside a container).",
    )
    http_port: int | None = setting(
        "KILROY_HTTP_PORT",
        None,
        kind=INTEGER,
        lo=1,
        hi=65535,
        expected="a TCP port (1-65535)",
        example="8080",
        help="Port of the HTTP server; empty: no HTTP server.",
    )
    dashboard_token: Secret = setting(
        "KILROY_DASHBOARD_TOKEN",
        Secret(""),
        help="Token for the dashboard (Authorization: Bearer <token>, or the login form); empty: no dashboard "
        '(health and metrics still answer). Make one with: python -c "import secrets; '
        'print(secrets.token_urlsafe(32))"',
    )
    backup_dir: Path | None = setting(
        "KILROY_BACKUP_DIR",
        None,
        kind=PATH,
        help="Folder for the nightly backup taken before each training; empty: no automatic backup.",
    )
    backup_keep: int = setting(
        "KILROY_BACKUP_KEEP", 7, lo=1, hi=1000, help="How many automatic backups to keep in KILROY_BACKUP_DIR."
    )
    log_format: str = setting(
        "KILROY_LOG_FORMAT",
        "text",
        choices=("text", "json"),
        help="text (human-readable) or json (one JSON object per line, for log shippers).",
    )
    dashboard_session_hours: float = setting(
        "KILROY_DASHBOARD_SESSION_HOURS",
        168.0,
        lo=0.1,
        hi=24 * 90,
        help="How long a dashboard login lasts (held by the server; logout or a restart ends it sooner).",
    )
    dashboard_secure_cookies: bool = setting(
        "KILROY_DASHBOARD_SECURE_COOKIES",
        False,
        help="true behind TLS (a reverse proxy serving HTTPS): the session cookie then only travels over HTTPS.",
    )


@dataclass(frozen=True)
class ShardSettings:
    """Which of the bot's gateway shards this process holds; `bot.domain.shards` says what that makes it own."""

    count: int | None = setting(
        "KILROY_SHARD_COUNT",
        None,
        kind=INTEGER,
        lo=1,
        hi=100_000,
        expected="a whole number of shards",
        example="2",
        help="Total number of gateway shards across every Kilroy process (Discord requires sharding from 2,500 "
        "servers). Empty: Discord recommends the count and this one process holds every shard.",
    )
    ids: tuple[int, ...] = setting(
        "KILROY_SHARD_IDS",
        (),
        kind=SHARD_IDS,
        help="The shards this process holds (comma-separated, each from 0 to KILROY_SHARD_COUNT - 1; needs "
        "KILROY_SHARD_COUNT). A server's posts, catch-up and commands belong to the process holding its shard; "
        "the one holding shard 0 also runs the database-wide jobs (retention, nightly training, trials, command "
        "sync). Empty: every shard.",
    )


def shard_problems(env: Mapping[str, str | None]) -> list[str]:
    """What is wrong between KILROY_SHARD_COUNT and KILROY_SHARD_IDS (each alone is checked by its reader)."""
    raw_count = (env.get("KILROY_SHARD_COUNT") or "").strip()
    raw_ids = (env.get("KILROY_SHARD_IDS") or "").strip()
    parts = [p for p in raw_ids.replace(",", " ").split() if p]
    if not parts or not all(p.isdigit() for p in parts):
        return []  # no ids (every shard), or ids the reader already refused
    ids = [int(p) for p in parts]
    problems = []
    if not raw_count:
        problems.append(
            f"KILROY_SHARD_IDS={raw_ids!r} needs KILROY_SHARD_COUNT, the total number of shards across every process; "
            f"set it in .env (e.g. KILROY_SHARD_COUNT={max(ids) + 1}), or leave KILROY_SHARD_IDS empty for every shard"
        )
    elif raw_count.isdigit() and int(raw_count) >= 1:
        count = int(raw_count)
        outside = sorted({i for i in ids if i >= count})
        if outside:
            problems.append(
                f"KILROY_SHARD_IDS={raw_ids!r} names shard {', '.join(map(str, outside))}, but KILROY_SHARD_COUNT="
                f"{count} numbers the shards 0 to {count - 1}; list shards in that range in .env"
            )
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        problems.append(
            f"KILROY_SHARD_IDS={raw_ids!r} names shard {', '.join(map(str, twice))} more than once; list each shard "
            "once in .env"
        )
    return problems


@dataclass(frozen=True)
class Settings:
    discord: DiscordSettings = section(DiscordSettings, "Discord")
    data_dir: Path = setting(
        "KILROY_DATA_DIR",
        Path("data"),
        heading="Paths",
        help="Database, the tiny offline model's cache and generated corpora.",
    )
    db_path: Path = setting(
        "KILROY_DB_PATH",
        Path("data/kilroy.db"),
        derive=lambda values: values["data_dir"] / "kilroy.db",
        shown="",
        help="SQLite database (default: <KILROY_DATA_DIR>/kilroy.db).",
    )
    database_url: Secret = setting(
        "KILROY_DATABASE_URL",
        Secret(""),
        kind=DATABASE_URL,
        help="PostgreSQL instead of the SQLite file: postgresql://USER:PASSWORD@HOST:5432/DBNAME (a unix socket: "
        "postgresql://USER@/DBNAME?host=/run/postgresql). Empty: the SQLite file at KILROY_DB_PATH. "
        "`kilroy migrate-db --to URL` copies an existing SQLite install into it.",
    )
    adapters_dir: Path = setting("KILROY_ADAPTERS_DIR", Path("adapters"), help="LoRA adapter versions.")
    log_level: str = setting(
        "KILROY_LOG_LEVEL",
        "INFO",
        kind=LEVEL,
        choices=("debug", "info", "warning", "error"),
        help="debug, info, warning or error.",
    )
    model: ModelSettings = section(ModelSettings, "Model")
    generation: GenerationSettings = section(GenerationSettings, "Generation")
    scoring: ScoringSettings = section(ScoringSettings, "Scoring")
    training: TrainingSettings = section(TrainingSettings, "Training")
    story: StorySettings = section(StorySettings, "Story mode")
    safety: SafetySettings = section(SafetySettings, "Safety and privacy")
    trials: TrialSettings = section(TrialSettings, "A/B trials")
    ops: OpsSettings = section(OpsSettings, "Operations")
    shards: ShardSettings = section(ShardSettings, "Shards")

    @classmethod
    def from_env(cls, env: Mapping[str, str | None]) -> Settings:
        """Build settings from a mapping of variables; raise ConfigError listing every bad one."""
        problems: list[str] = []
        settings = None
        try:
            settings = read(cls, env)
        except ConfigError as exc:
            problems = list(exc.problems)
        problems += shard_problems(env)
        token = (env.get("KILROY_DASHBOARD_TOKEN") or "").strip()
        if token and len(token) < DASHBOARD_TOKEN_MIN_CHARS:  # never echo the token itself
            problems.append(
                f"KILROY_DASHBOARD_TOKEN is {len(token)} characters long; a dashboard token needs at least "
                f"{DASHBOARD_TOKEN_MIN_CHARS}: make one with "
                '`python -c "import secrets; print(secrets.token_urlsafe(32))"`, or leave it empty for no dashboard'
            )
        if settings is not None and settings.training.queue == "postgres" and not settings.database_url:
            problems.append(
                "KILROY_TRAINING_QUEUE=postgres keeps its jobs in PostgreSQL: set KILROY_DATABASE_URL too "
                "(postgresql://USER:PASSWORD@HOST:5432/DBNAME), or KILROY_TRAINING_QUEUE=local"
            )
        if problems:
            raise ConfigError(problems)
        assert settings is not None
        return settings

    @property
    def database(self) -> Path | str:
        """What the storage opens: the PostgreSQL URL when KILROY_DATABASE_URL is set, else the SQLite file."""
        return self.database_url.get() or self.db_path

    @property
    def database_shown(self) -> str:
        """The database as logs and messages name it: the URL without its password, or the file."""
        return hide_password(self.database_url.get()) if self.database_url else str(self.db_path)

    def replace(self, **changes: Any) -> Settings:
        """Return a copy with top-level fields changed. A new `db_path` means that SQLite file (a simulation's
        scratch database, the terminal story's ':memory:'): it also clears KILROY_DATABASE_URL unless given."""
        if "db_path" in changes and "database_url" not in changes:
            changes["database_url"] = Secret("")
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
        return codec.encode(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Settings:
        """The inverse of `to_json` (secrets come back empty); unknown keys are an error, missing ones default."""
        return codec.decode(cls(), data)


def load_settings(env_file: str | Path | None = ".env", overrides: Mapping[str, str] | None = None) -> Settings:
    """Settings from `env_file` (if it exists) overlaid by the process environment, then by `overrides`.

    The file is read with python-dotenv without touching `os.environ`.
    """
    return Settings.from_env(environment(env_file, overrides))
