"""The offline demo: nights of posting to a simulated audience, scoring, and nightly training.

Members have hidden preferences (liked and disliked words). Their reactions and replies go through the real
Storage (including a bot's reactions, which must be ignored, and removed reactions), scores come from the real
scoring code, and training is the real nightly run with its gate. Nothing here takes a shortcut around them.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import math
import random
import re
import shutil
import statistics
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.config.settings import Settings
from bot.domain.community import COMMONS
from bot.domain.safety import OutputFilter
from bot.domain.scoring import ScoreFormula, score_post
from bot.engine.compose import RECENT_POSTS
from bot.storage import NewPost, PostRecord, Storage
from bot.training.objective import distinct_n, repeat3
from bot.training.reward_model import REWARD_MODEL_FILE, RewardModel, RewardModelFile

if TYPE_CHECKING:
    from bot.engine.compose import Choice
    from bot.engine.generator import Sample
    from bot.training.result import Progress

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
    """Who reads the posts. JSON form: see README ("Commands"); only members and reaction_rate are required."""

    name: str
    members: int
    reaction_rate: float
    likes: Mapping[str, float]
    dislikes: Mapping[str, float] = field(default_factory=dict)
    reply_rate: float = 0.15  # chance a reacting member also replies
    question_weight: float = 0.0  # affinity for posts that ask a question
    emoji_weight: float = 0.0  # affinity for posts with emoji
    max_affinity: float = 3.0
    taste_spread: float = 0.0  # members' word weights scatter around the audience's: weight·lognormal(0, spread)
    fatigue: float = 0.0  # affinity lost per unit of bigram overlap with a recently seen post
    fatigue_window: int = 64  # how many recent posts a member remembers
    # preferences outside the reward model's words-plus-style class (issue 21): an ordered word pair written together
    # ("hot take": weight), and a preferred length (+length_weight at length_ideal words, falling off as a Gaussian
    # of width length_width)
    phrases: Mapping[str, float] = field(default_factory=dict)
    length_ideal: float = 0.0
    length_width: float = 4.0
    length_weight: float = 0.0

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
        try:
            spread = float(data.get("taste_spread", 0.0))
            fatigue = float(data.get("fatigue", 0.0))
            window = int(data.get("fatigue_window", cls.fatigue_window))
        except (TypeError, ValueError) as exc:
            raise AudienceError(f"audience spec has a bad number: {exc}") from exc
        if spread < 0 or fatigue < 0:
            raise AudienceError("'taste_spread' and 'fatigue' must be at least 0")
        if window < 1:
            raise AudienceError("'fatigue_window' must be at least 1")
        phrases = data.get("phrases", {})
        if not isinstance(phrases, Mapping) or not all(
            isinstance(v, int | float) and len(str(k).split()) == 2 for k, v in phrases.items()
        ):
            raise AudienceError("'phrases' must map two-word phrases to numbers")
        try:
            length = (float(data.get("length_ideal", 0.0)), float(data.get("length_width", cls.length_width)))
            length_weight = float(data.get("length_weight", 0.0))
        except (TypeError, ValueError) as exc:
            raise AudienceError(f"audience spec has a bad number: {exc}") from exc
        if length[0] < 0 or length[1] <= 0:
            raise AudienceError("'length_ideal' must be at least 0 and 'length_width' above 0")
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
            taste_spread=spread,
            fatigue=fatigue,
            fatigue_window=window,
            phrases={" ".join(str(k).lower().split()): float(v) for k, v in phrases.items()},
            length_ideal=length[0],
            length_width=length[1],
            length_weight=length_weight,
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
        return _affinity(text, self.likes, self.dislikes, self)

    def community(self, rng: random.Random) -> Community:
        """Draw the members: each gets its own word weights (spread by `taste_spread`) and an empty memory."""
        return Community(self, rng)


def _affinity(text: str, likes: Mapping[str, float], dislikes: Mapping[str, float], spec: AudienceSpec) -> float:
    seq = _WORD.findall(text.lower())
    words = set(seq)
    a = sum(w for word, w in likes.items() if word in words)
    a -= sum(w for word, w in dislikes.items() if word in words)
    if spec.phrases:
        pairs = {f"{x} {y}" for x, y in itertools.pairwise(seq)}
        a += sum(w for phrase, w in spec.phrases.items() if phrase in pairs)
    if spec.length_weight:
        a += spec.length_weight * math.exp(-0.5 * ((len(seq) - spec.length_ideal) / spec.length_width) ** 2)
    if "?" in text:
        a += spec.question_weight
    if any(ord(c) > 0x2000 for c in text):
        a += spec.emoji_weight
    return max(-spec.max_affinity, min(spec.max_affinity, a))


def bigrams(text: str) -> frozenset[tuple[str, str]]:
    """The word bigrams of a text (lowercased words), as fatigue compares them."""
    words = _WORD.findall(text.lower())
    return frozenset(itertools.pairwise(words))


def max_overlap(grams: frozenset[tuple[str, str]], seen: Iterable[frozenset[tuple[str, str]]]) -> float:
    """The largest Jaccard overlap between a post's bigrams and any of the seen posts' bigrams (0 if none)."""
    best = 0.0
    for other in seen:
        if not grams or not other:
            continue
        inter = len(grams & other)
        if inter:
            best = max(best, inter / len(grams | other))
    return best


class Community:
    """An audience's members, drawn once per run: their own word weights and what each has recently seen.

    Every member sees every post, so the members' memories are the same list; it is kept once. A member's
    affinity for a post is their taste for its words minus `fatigue` times the post's largest bigram overlap
    with the last `fatigue_window` posts they saw, and they react with probability min(0.95, rate·e^affinity).
    Fatigue only makes a reaction less likely; which emoji a reaction is follows the member's taste.
    """

    def __init__(self, spec: AudienceSpec, rng: random.Random) -> None:
        self.spec = spec
        self.weights: list[tuple[dict[str, float], dict[str, float]]] = []
        for _ in range(spec.members):
            if spec.taste_spread > 0:
                likes = {w: v * rng.lognormvariate(0.0, spec.taste_spread) for w, v in spec.likes.items()}
                dislikes = {w: v * rng.lognormvariate(0.0, spec.taste_spread) for w, v in spec.dislikes.items()}
            else:
                likes, dislikes = dict(spec.likes), dict(spec.dislikes)
            self.weights.append((likes, dislikes))
        self.seen: deque[frozenset[tuple[str, str]]] = deque(maxlen=spec.fatigue_window)

    def affinities(self, text: str, seen: Iterable[frozenset[tuple[str, str]]] | None = None) -> list[float]:
        """Each member's affinity for `text` given what they have seen (default: their actual memory)."""
        penalty = self.fatigue_penalty(text, seen)
        return [taste - penalty for taste in self.tastes(text)]

    def tastes(self, text: str) -> list[float]:
        """Each member's taste for `text` (their word weights and the style terms, capped), before fatigue."""
        return [_affinity(text, likes, dislikes, self.spec) for likes, dislikes in self.weights]

    def fatigue_penalty(self, text: str, seen: Iterable[frozenset[tuple[str, str]]] | None = None) -> float:
        """`fatigue` times the post's largest bigram overlap with what the members saw (default: their memory)."""
        if self.spec.fatigue <= 0:
            return 0.0
        return self.spec.fatigue * max_overlap(bigrams(text), self.seen if seen is None else seen)

    def probabilities(self, text: str, seen: Iterable[frozenset[tuple[str, str]]] | None = None) -> list[float]:
        """Each member's chance of reacting to `text`."""
        return [min(0.95, self.spec.reaction_rate * math.exp(a)) for a in self.affinities(text, seen)]

    def see(self, text: str) -> None:
        """Every member has now seen `text`."""
        if self.spec.fatigue > 0:
            self.seen.append(bigrams(text))

    def expected_score(
        self, text: str, formula: ScoreFormula, seen: Iterable[frozenset[tuple[str, str]]] | None = None
    ) -> float:
        """The post's expected score under `formula`: the analytic mean of what `react` does, no sampling noise."""
        neutral = sum(formula.weight(e) for e in _NEUTRAL) / len(_NEUTRAL)
        penalty = self.fatigue_penalty(text, seen)
        total = 0.0
        for taste in self.tastes(text):
            p = min(0.95, self.spec.reaction_rate * math.exp(taste - penalty))
            # as `react` draws it: a disliked post gets 👎 half the time, a liked one ❤️, else a neutral emoji
            vote = (
                formula.weight("❤️") if taste > 0 else neutral if taste == 0 else 0.5 * (formula.weight("👎") + neutral)
            )
            total += p * ((1 - _CHANGED_MIND) * vote + self.spec.reply_rate * formula.reply_weight)
        return total

    def expected_scores(self, texts: Sequence[str], formula: ScoreFormula) -> list[float]:
        """Steady-state expected scores of a policy's samples: each is judged against the `fatigue_window`
        samples before it (circularly), as if the policy had been posting them all along. History-free, so nights
        compare on the weights alone."""
        grams = [bigrams(t) for t in texts]
        n, window = len(texts), self.spec.fatigue_window
        out = []
        for i, text in enumerate(texts):
            seen = [grams[(i - k) % n] for k in range(1, min(window, n - 1) + 1)] if self.spec.fatigue > 0 else ()
            out.append(self.expected_score(text, formula, seen))
        return out


def builtin_audiences() -> dict[str, AudienceSpec]:
    """The shipped audiences (bot/sim/audiences/*.json)."""
    out = {}
    for entry in (resources.files("bot.sim") / "audiences").iterdir():
        if entry.name.endswith(".json"):
            name = entry.name[: -len(".json")]
            out[name] = AudienceSpec.from_dict(json.loads(entry.read_text(encoding="utf-8")), name=name)
    return dict(sorted(out.items()))


_NEUTRAL = ("👍", "😂", "👀")
_CHANGED_MIND = 0.05


async def react(
    storage: Storage,
    audience: AudienceSpec | Community,
    message_id: int,
    text: str,
    at: float,
    rng: random.Random,
) -> None:
    """Every member sees the post and maybe reacts or replies, through the real storage calls."""
    community = audience if isinstance(audience, Community) else audience.community(rng)
    spec = community.spec
    penalty = community.fatigue_penalty(text)
    for member, a in enumerate(community.tastes(text), start=1):
        # fatigue makes a reaction less likely; what the reaction says is the member's taste
        p = min(0.95, spec.reaction_rate * math.exp(a - penalty))
        if rng.random() >= p:
            continue
        member_id = 10_000 + member
        # dislike shows as 👎 half the time; liking as ❤️; indifference as a neutral emoji
        neutral = rng.choice(_NEUTRAL)
        emoji = "👎" if a < 0 and rng.random() < 0.5 else ("❤️" if a > 0 else neutral)
        await storage.add_vote(message_id, member_id, emoji, at=at)
        if rng.random() < 0.05:  # a duplicate gateway event: must not count twice
            await storage.add_vote(message_id, member_id, emoji, at=at)
        if rng.random() < _CHANGED_MIND:  # changed their mind
            await storage.remove_vote(message_id, member_id, emoji, at=at + 60)
        if rng.random() < spec.reply_rate:
            await storage.add_reply(message_id * 1000 + member, message_id, member_id, at=at + 120, length=20)
    if rng.random() < 0.3:  # another bot reacting: logged, never counted
        await storage.add_vote(message_id, BOT_MEMBER, "🤖", at=at, is_bot=True)
    community.see(text)


async def publish_night(
    storage: Storage,
    audience: AudienceSpec | Community,
    samples: Sequence[Sample],
    *,
    start: float,
    first_id: int,
    rng: random.Random,
    choices: Sequence[Choice] | None = None,
) -> list[PostRecord]:
    """Post a night's samples (spread over 12 hours, across the channels), let the audience react, and return the
    night's records as scoring will read them. With `choices` (best-of-N, one per sample), each post's candidates
    are recorded as the bot records them."""
    community = audience if isinstance(audience, Community) else audience.community(rng)
    for i, smp in enumerate(samples):
        at = start + i * (12 * 3600.0 / max(1, len(samples)))
        post_id = await storage.add_post(
            NewPost.from_sample(smp, channel_id=CHANNELS[i % len(CHANNELS)], created_at=at, message_id=first_id + i)
        )
        if choices is not None and choices[i].candidates[0].predicted is not None:
            await storage.add_candidates(post_id, choices[i].candidates, chosen=choices[i].chosen)
        await react(storage, community, first_id + i, smp.text, at + 300, rng)
    return await storage.post_records(created_after=start - 1, created_before=start + DAY)


# two-sided 97.5% quantiles of Student's t for 1..30 degrees of freedom (the CI over a handful of seeds)
_T975 = (
    *(12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131),
    *(2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042),
)


def mean_ci(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean and 95% confidence interval (Student's t over independent runs): (mean, lo, hi).

    One value gives a zero-width interval: a single seed says nothing about the spread.
    """
    if not values:
        raise ValueError("no values")
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, mean, mean
    t = _T975[len(values) - 2] if len(values) - 1 <= len(_T975) else 1.96
    half = t * statistics.stdev(values) / math.sqrt(len(values))
    return mean, mean - half, mean + half


@dataclass(frozen=True)
class NightResult:
    """One night: what was posted and how the members reacted (sampled), and the served adapter's evaluation."""

    night: int
    mean_score: float  # the night's sampled reactions, scored by the real scoring code
    posts: int
    adapter: str
    distinct2: float  # on the evaluation samples
    promoted: bool | None = None
    gate: str = ""
    samples: tuple[str, ...] = ()
    expected_score: float = 0.0  # mean analytic expected score of the evaluation samples
    kl: float = 0.0  # served adapter's mean per-token KL to the base on the evaluation samples, nats
    repeat3: float = 0.0
    mean_tokens: float = 0.0
    # best-of-N: `expected_score`, `repeat3`, `distinct2` and `mean_tokens` are of the posts as picked; these are of
    # the adapter's plain samples, and `kl_rerank` is the pick's KL bound per token (log N - (N-1)/N per post)
    expected_adapter: float = 0.0
    kl_rerank: float = 0.0
    reranked: bool = False


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
        """Final over night-0 expected score: the served policy's engagement without the reactions' noise."""
        return _ratio(self.nights[-1].expected_score, self.nights[0].expected_score) if self.nights else 1.0

    @property
    def lift_sampled(self) -> float:
        """Final over night-0 mean sampled score (the old, noisy lift: one night of posts over another)."""
        return _ratio(self.final_mean_score, self.baseline_mean_score)

    def as_json(self) -> dict[str, Any]:
        """The `--json` shape README describes ("Commands")."""
        return {
            "audience": self.audience,
            "seed": self.seed,
            "nights": [
                {
                    "night": n.night,
                    "mean_score": n.mean_score,
                    "expected_score": n.expected_score,
                    "posts": n.posts,
                    "adapter": n.adapter,
                    "distinct2": n.distinct2,
                    "kl": n.kl,
                    "repeat3": n.repeat3,
                    "mean_tokens": n.mean_tokens,
                    "expected_adapter": n.expected_adapter,
                    "kl_rerank": n.kl_rerank,
                    "reranked": n.reranked,
                    "promoted": n.promoted,
                    "gate": n.gate,
                    "samples": list(n.samples[:5]),
                }
                for n in self.nights
            ],
            "baseline_mean_score": self.baseline_mean_score,
            "final_mean_score": self.final_mean_score,
            "lift": self.lift,
            "lift_sampled": self.lift_sampled,
        }


def summarise(results: Sequence[SimulationResult]) -> dict[str, Any]:
    """Several seeds' runs as one JSON object: mean lifts, the 95% CI of the lift over seeds, and each run."""
    mean, lo, hi = mean_ci([r.lift for r in results])
    return {
        "audience": results[0].audience,
        "seeds": [r.seed for r in results],
        "lift": mean,
        "lift_ci": [lo, hi],
        "lift_sampled": statistics.fmean(r.lift_sampled for r in results),
        "runs": [r.as_json() for r in results],
    }


def _ratio(final: float, base: float) -> float:
    return final / base if base > 0 else float("inf") if final > 0 else 1.0


def simulation_settings(settings: Settings, workdir: Path) -> Settings:
    """Settings for a simulation run: its own database and adapter store under `workdir`."""
    # the offline nights promote on the gate alone; live A/B trials run only with `--ab` (bot/sim/ab.py)
    return gate_only(settings.replace(db_path=workdir / "kilroy.db", adapters_dir=workdir / "adapters"))


def gate_only(settings: Settings) -> Settings:
    """Settings with live A/B trials off: offline nights promote on the gate alone (trials need a live community)."""
    import dataclasses

    return settings.replace(trials=dataclasses.replace(settings.trials, share=0.0))


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
    eval_samples: int = 256,
) -> SimulationResult:
    """Run the nights loop in a fresh workspace; return per-night engagement.

    Each night the served adapter also draws `eval_samples` fresh samples (the same seed every night, so nights
    differ by the weights alone), scored by the audience's expected engagement and compared with the base.
    With `isolated`, each night's training runs in the worker process exactly as the bot runs it (slower by the
    worker's start-up); otherwise the same `run_training` runs in this process.
    """
    import asyncio

    from bot.services import open_services
    from bot.training.trainer import kl_to_base

    emit = on_event or (lambda _e: None)
    _fresh_dir(workdir)
    settings = simulation_settings(settings, workdir)
    settings = settings.replace(training=_with_seed(settings, seed))
    formula = settings.scoring
    rng = random.Random(seed)
    community = audience.community(random.Random(f"{audience.name}/{seed}"))
    result = SimulationResult(audience.name, seed)
    message_id = 1
    best_of = settings.generation.best_of
    pick_rng = random.Random(f"pick/{seed}")
    output_filter = OutputFilter(settings.discord.blocklist, settings.safety.allow_urls)
    reward_file = RewardModelFile(settings.adapters_dir / COMMONS / REWARD_MODEL_FILE)  # the commons' lineage
    channel: deque[str] = deque(maxlen=RECENT_POSTS)  # the channel's latest posts, as the bot reads them to pick
    async with open_services(settings, in_process_training=not isolated) as services:
        storage, generator, loaded = services.storage, services.generator, services.generator.loaded
        for night in range(nights):
            start = EPOCH + night * DAY
            emit({"event": "night", "night": night, "stage": "posting", "adapter": generator.active})
            # the bot's posting path (bot/engine/compose.py): N candidates a post, the reward model's favourite sent
            model = await reward_file.current() if best_of > 1 else None
            group = max(2, best_of) if model is not None else 2  # no model yet: the first postable of two
            drawn = await generator.generate(
                posts_per_night * group, prompt=settings.generation.prompt, seed=seed * 7919 + night
            )
            choices = _pick_all(drawn, group, output_filter, model, settings, pick_rng, channel)
            samples = [c.sample for c in choices]
            records = await publish_night(
                storage, community, samples, start=start, first_id=message_id, rng=rng, choices=choices
            )
            message_id += len(samples)
            texts = [smp.text for smp in samples]
            mean = sum(score_post(r, formula) for r in records) / max(1, len(records))
            # the honest metric: fresh samples of the served adapter, scored without the reactions' noise; with
            # best-of-N, `eval_samples` posts picked as the bot picks them (N fresh samples each)
            held = await generator.generate(
                max(2, eval_samples) * (max(2, best_of) if model is not None else 1),
                prompt=settings.generation.prompt,
                seed=seed * 7919 + 104_729,
            )
            plain = held[: max(2, eval_samples)] if model is None else held[:: max(2, best_of)]
            if model is None:
                picked = plain
            else:  # the channel's history as the evaluation posts build it (a fresh one each night: steady state)
                recent: deque[str] = deque(maxlen=RECENT_POSTS)
                chosen = _pick_all(held, best_of, output_filter, model, None, None, recent, settings)
                picked = [c.sample for c in chosen]
            picked_texts = [s.text for s in picked]
            kl = await asyncio.to_thread(kl_to_base, _served_model(generator), loaded.tokenizer, plain)
            mean_tokens = statistics.fmean(s.tokens for s in picked)
            kl_rerank = rerank_kl(best_of) / max(1.0, mean_tokens) if model is not None else 0.0
            night_result = NightResult(
                night,
                mean,
                len(records),
                generator.active,
                distinct_n(picked_texts),
                samples=tuple(texts),
                expected_score=statistics.fmean(community.expected_scores(picked_texts, formula)),
                kl=kl + kl_rerank,
                repeat3=repeat3(picked_texts),
                mean_tokens=mean_tokens,
                expected_adapter=statistics.fmean(community.expected_scores([s.text for s in plain], formula)),
                kl_rerank=kl_rerank,
                reranked=model is not None,
            )
            if night < nights - 1:
                emit({"event": "night", "night": night, "stage": "training", "mean_score": mean})

                def progress(event: Progress, night: int = night) -> None:
                    emit({**event.to_json(), "night": night})

                # the bot's path: lock, train (worker process if isolated), gate, promotion sequence
                run = await services.training.run("simulate", progress, now=start + DAY - 1)
                night_result = dataclasses.replace(night_result, promoted=run.promoted, gate=run.reason)
            result.nights.append(night_result)
            emit(
                {
                    "event": "night_done",
                    "night": night,
                    "mean_score": mean,
                    "expected_score": night_result.expected_score,
                    "kl": night_result.kl,
                    "adapter": night_result.adapter,
                    "promoted": night_result.promoted,
                    "gate": night_result.gate,
                }
            )
    return result


def rerank_kl(n: int) -> float:
    """The KL of best-of-`n` to its policy, at most log n - (n-1)/n nats per post (Beirami et al. 2024)."""
    return math.log(n) - (n - 1) / n if n > 1 else 0.0


def _pick_all(
    drawn: Sequence[Sample],
    n: int,
    output_filter: OutputFilter,
    model: RewardModel | None,
    settings: Settings | None = None,
    rng: random.Random | None = None,
    recent: deque[str] | None = None,
    novelty_settings: Settings | None = None,
) -> list[Choice]:
    """`drawn` in groups of `n`, each picked as the bot picks a post (groups with nothing postable are skipped).

    Evaluation picks greedily (no `settings`): the served policy's exploitation, without the exploration share.
    `recent` is the channel's latest posts (each pick is appended to it), for the novelty term of
    `novelty_settings` (default `settings`)."""
    from bot.engine.compose import pick

    explore = settings.generation.best_of_explore if settings is not None else 0.0
    ns = novelty_settings or settings
    novelty = ns.generation.best_of_novelty if ns is not None else 0.0
    scorer = model.scores if model is not None else None
    out = []
    for i in range(0, len(drawn), n):
        c = pick(
            drawn[i : i + n],
            output_filter,
            scorer=scorer,
            explore=explore,
            rng=rng,
            recent=tuple(recent) if recent is not None and novelty > 0 else (),
            novelty=novelty,
        )
        if c is not None:
            out.append(c)
            if recent is not None:
                recent.append(c.sample.text)
    return out


def _served_model(generator: Any) -> Any:
    """The model as it serves now: the peft wrapper with the active adapter, or None while the base serves."""
    from bot.adapters.store import BASE

    # the offline harness reads the generator's model directly; the bot never does
    return None if generator.active == BASE else generator._peft


def _fresh_dir(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)


def _with_seed(settings: Settings, seed: int) -> Any:
    return dataclasses.replace(settings.training, seed=seed)
