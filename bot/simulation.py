"""The offline demo: nights of posting to a simulated audience, scoring, and nightly training.

Members have hidden preferences (liked and disliked words). Their reactions and replies go through the real
Storage (including a bot's reactions, which must be ignored, and removed reactions), scores come from the real
scoring code, and training is the real nightly run with its gate. Nothing here takes a shortcut around them.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.config import Settings
from bot.scoring import formula_from_settings, score_post
from bot.storage import NewPost, PostRecord, Storage
from bot.training.objective import distinct_n

if TYPE_CHECKING:
    from bot.engine.generator import Sample

log = logging.getLogger(__name__)

EPOCH = 1_767_225_600.0  # 2026-01-01T00:00:00Z: the simulation's day zero
DAY = 86400.0
CHANNELS = (1001, 1002)  # two channels, so per-channel normalisation is exercised
BOT_MEMBER = 999_999  # another bot on the server: its reactions must never count
_WORD = re.compile(r"[\w'-]+")


class AudienceError(ValueError):
    """An audience spec is invalid; the message names the key."""


@dataclass(frozen=True)
class AudienceSpec:
    """Who reads the posts. JSON form: see DESIGN.md; keys beyond the four required are optional."""

    name: str
    members: int
    reaction_rate: float
    likes: Mapping[str, float]
    dislikes: Mapping[str, float] = field(default_factory=dict)
    reply_rate: float = 0.15  # chance a reacting member also replies
    question_weight: float = 0.0  # affinity for posts that ask a question
    emoji_weight: float = 0.0  # affinity for posts with emoji
    max_affinity: float = 3.0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], name: str = "custom") -> AudienceSpec:
        """Validate and build a spec from parsed JSON."""
        if not isinstance(data, Mapping):
            raise AudienceError("an audience spec is a JSON object")
        try:
            members = int(data["members"])
            rate = float(data["reaction_rate"])
        except KeyError as exc:
            raise AudienceError(f"audience spec is missing {exc.args[0]!r}") from exc
        except (TypeError, ValueError) as exc:
            raise AudienceError(f"audience spec has a bad number: {exc}") from exc
        if members < 1:
            raise AudienceError("'members' must be at least 1")
        if not 0 < rate <= 1:
            raise AudienceError("'reaction_rate' must be in (0, 1]")
        likes, dislikes = data.get("likes", {}), data.get("dislikes", {})
        for key, words in (("likes", likes), ("dislikes", dislikes)):
            if not isinstance(words, Mapping) or not all(isinstance(v, int | float) for v in words.values()):
                raise AudienceError(f"{key!r} must map words to numbers")
        return cls(
            name=str(data.get("name", name)),
            members=members,
            reaction_rate=rate,
            likes={str(k).lower(): float(v) for k, v in likes.items()},
            dislikes={str(k).lower(): float(v) for k, v in dislikes.items()},
            reply_rate=float(data.get("reply_rate", cls.reply_rate)),
            question_weight=float(data.get("question_weight", 0.0)),
            emoji_weight=float(data.get("emoji_weight", 0.0)),
            max_affinity=float(data.get("max_affinity", cls.max_affinity)),
        )

    @classmethod
    def from_file(cls, path: Path) -> AudienceSpec:
        """Read a JSON spec file."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise AudienceError(f"cannot read audience file {path}: {exc.strerror}") from exc
        except ValueError as exc:
            raise AudienceError(f"audience file {path} is not valid JSON: {exc}") from exc
        return cls.from_dict(data, name=Path(path).stem)

    def affinity(self, text: str) -> float:
        """How much this audience likes a text: liked minus disliked words, plus style terms, capped."""
        words = set(_WORD.findall(text.lower()))
        a = sum(w for word, w in self.likes.items() if word in words)
        a -= sum(w for word, w in self.dislikes.items() if word in words)
        if "?" in text:
            a += self.question_weight
        if any(ord(c) > 0x2000 for c in text):
            a += self.emoji_weight
        return max(-self.max_affinity, min(self.max_affinity, a))


def builtin_audiences() -> dict[str, AudienceSpec]:
    """The shipped audiences (bot/audiences/*.json)."""
    out = {}
    for entry in (resources.files("bot") / "audiences").iterdir():
        if entry.name.endswith(".json"):
            name = entry.name[: -len(".json")]
            out[name] = AudienceSpec.from_dict(json.loads(entry.read_text(encoding="utf-8")), name=name)
    return dict(sorted(out.items()))


async def react(
    storage: Storage, audience: AudienceSpec, message_id: int, text: str, at: float, rng: random.Random
) -> None:
    """Every member sees the post and maybe reacts or replies, through the real storage calls."""
    a = audience.affinity(text)
    p = min(0.95, audience.reaction_rate * math.exp(a))
    for member in range(1, audience.members + 1):
        if rng.random() >= p:
            continue
        member_id = 10_000 + member
        # dislike shows as 👎 half the time; liking as ❤️; indifference as a neutral emoji
        neutral = rng.choice(["👍", "😂", "👀"])
        emoji = "👎" if a < 0 and rng.random() < 0.5 else ("❤️" if a > 0 else neutral)
        await storage.add_vote(message_id, member_id, emoji, at=at)
        if rng.random() < 0.05:  # a duplicate gateway event: must not count twice
            await storage.add_vote(message_id, member_id, emoji, at=at)
        if rng.random() < 0.05:  # changed their mind
            await storage.remove_vote(message_id, member_id, emoji, at=at + 60)
        if rng.random() < audience.reply_rate:
            await storage.add_reply(message_id * 1000 + member, message_id, member_id, at=at + 120, length=20)
    if rng.random() < 0.3:  # another bot reacting: logged, never counted
        await storage.add_vote(message_id, BOT_MEMBER, "🤖", at=at, is_bot=True)


async def publish_night(
    storage: Storage,
    audience: AudienceSpec,
    samples: Sequence[Sample],
    *,
    start: float,
    first_id: int,
    rng: random.Random,
) -> list[PostRecord]:
    """Post a night's samples (spread over 12 hours, across the channels), let the audience react, and return the
    night's records as scoring will read them."""
    for i, smp in enumerate(samples):
        at = start + i * (12 * 3600.0 / max(1, len(samples)))
        await storage.add_post(
            NewPost.from_sample(smp, channel_id=CHANNELS[i % len(CHANNELS)], created_at=at, message_id=first_id + i)
        )
        await react(storage, audience, first_id + i, smp.text, at + 300, rng)
    return await storage.post_records(created_after=start - 1, created_before=start + DAY)


@dataclass(frozen=True)
class NightResult:
    night: int
    mean_score: float
    posts: int
    adapter: str
    distinct2: float
    promoted: bool | None = None
    gate: str = ""
    samples: tuple[str, ...] = ()


@dataclass
class SimulationResult:
    audience: str
    seed: int
    nights: list[NightResult] = field(default_factory=list)

    @property
    def baseline_mean_score(self) -> float:
        return self.nights[0].mean_score if self.nights else 0.0

    @property
    def final_mean_score(self) -> float:
        return self.nights[-1].mean_score if self.nights else 0.0

    @property
    def lift(self) -> float:
        base = self.baseline_mean_score
        return self.final_mean_score / base if base > 0 else float("inf") if self.final_mean_score > 0 else 1.0

    def as_json(self) -> dict[str, Any]:
        """The `--json` shape of DESIGN.md, plus a few extra keys."""
        return {
            "audience": self.audience,
            "seed": self.seed,
            "nights": [
                {
                    "night": n.night,
                    "mean_score": n.mean_score,
                    "posts": n.posts,
                    "adapter": n.adapter,
                    "distinct2": n.distinct2,
                    "promoted": n.promoted,
                    "gate": n.gate,
                    "samples": list(n.samples[:5]),
                }
                for n in self.nights
            ],
            "baseline_mean_score": self.baseline_mean_score,
            "final_mean_score": self.final_mean_score,
            "lift": self.lift,
        }


def simulation_settings(settings: Settings, workdir: Path) -> Settings:
    """Settings for a simulation run: its own database and adapter store under `workdir`."""
    return settings.replace(db_path=workdir / "kilroy.db", adapters_dir=workdir / "adapters")


async def simulate(
    settings: Settings,
    audience: AudienceSpec,
    *,
    nights: int,
    posts_per_night: int,
    seed: int,
    workdir: Path,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    isolated: bool = False,
) -> SimulationResult:
    """Run the nights loop in a fresh workspace; return per-night engagement.

    With `isolated`, each night's training runs in the worker process exactly as the bot runs it (slower by the
    worker's start-up); otherwise the same `run_training` runs in this process.
    """
    from bot.services import open_services

    emit = on_event or (lambda _e: None)
    _fresh_dir(workdir)
    settings = simulation_settings(settings, workdir)
    settings = settings.replace(training=_with_seed(settings, seed))
    formula = formula_from_settings(settings.scoring)
    rng = random.Random(seed)
    result = SimulationResult(audience.name, seed)
    message_id = 1
    async with open_services(settings, in_process_training=not isolated) as services:
        storage, generator = services.storage, services.generator
        for night in range(nights):
            start = EPOCH + night * DAY
            emit({"event": "night", "night": night, "stage": "posting", "adapter": generator.active})
            samples = await generator.generate(
                posts_per_night, prompt=settings.generation.prompt, seed=seed * 7919 + night
            )
            records = await publish_night(storage, audience, samples, start=start, first_id=message_id, rng=rng)
            message_id += len(samples)
            texts = [smp.text for smp in samples]
            mean = sum(score_post(r, formula) for r in records) / max(1, len(records))
            night_result = NightResult(
                night, mean, len(records), generator.active, distinct_n(texts), samples=tuple(texts)
            )
            if night < nights - 1:
                emit({"event": "night", "night": night, "stage": "training", "mean_score": mean})

                def progress(event: dict[str, Any], night: int = night) -> None:
                    emit({**event, "night": night})

                # the bot's path: lock, train (worker process if isolated), gate, promotion sequence
                run = await services.training.run("simulate", progress, now=start + DAY - 1)
                night_result = NightResult(
                    night,
                    mean,
                    len(records),
                    night_result.adapter,
                    night_result.distinct2,
                    run.promoted,
                    run.reason,
                    night_result.samples,
                )
            result.nights.append(night_result)
            emit(
                {
                    "event": "night_done",
                    "night": night,
                    "mean_score": mean,
                    "adapter": night_result.adapter,
                    "promoted": night_result.promoted,
                    "gate": night_result.gate,
                }
            )
    return result


def _fresh_dir(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)


def _with_seed(settings: Settings, seed: int) -> Any:
    import dataclasses

    return dataclasses.replace(settings.training, seed=seed)
