"""Several simulated servers on one bot (issue 24): `kilroy simulate --communities cat_people,football,realistic`.

Each audience is one simulated server (guild 101, 102, ...; community "g101", ...). They all post through one
generator, the real Storage holds every server's posts, reactions and replies, and each night runs the real
training path (`TrainingRunner`: lock, `run_training`, gate, `Promoter`) once per lineage. What serves a server each
night is `Lineages.serving`, decided by the commons policy (bot/adapters/commons.py). Three ways to learn:

    community   each server trains its own lineage from the base model (KILROY_COMMONS=off)
    shared      one adapter for all: the commons, trained on every server's pooled posts, serves every server
    commons     the commons serves a server until it has KILROY_COMMUNITY_MIN_POSTS settled posts and its own gate
                passed; its own lineage then trains from the commons (what the bot ships)

A server's lift is its audience's expected score of fresh samples of what serves it on the last night over night 0
(the base model), as `bot.sim.nights` measures one audience. Sampling is plain (best-of-N off): the comparison is
between adapters. The shared adapter's training sees all servers' posts in one run, each own lineage its server's:
with posts a night a multiple of KILROY_BATCH_SIZE, both spend the same gradient steps a night.
"""

from __future__ import annotations

import dataclasses
import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.config.settings import Settings
from bot.domain.community import COMMONS, community_id, parse_ref
from bot.domain.records import BASE
from bot.domain.scoring import score_post
from bot.sim.nights import (
    DAY,
    EPOCH,
    AudienceError,
    AudienceSpec,
    Community,
    builtin_audiences,
    mean_ci,
    react,
    simulation_settings,
)
from bot.storage import NewPost, Storage

MODES = ("community", "shared", "commons")
FIRST_GUILD = 101


def audiences_from(names: str) -> list[AudienceSpec]:
    """`--communities A,B,C`: built-in audience names or JSON spec files, at least two."""
    built = builtin_audiences()
    out = []
    for name in (n.strip() for n in names.split(",")):
        if not name:
            continue
        if name in built:
            out.append(built[name])
        elif name.endswith(".json") or "/" in name:
            out.append(AudienceSpec.from_file(Path(name)))
        else:
            raise AudienceError(f"unknown audience {name!r}: built in are {', '.join(built)}, or give a .json file")
    if len(out) < 2:
        raise AudienceError("--communities needs at least two audiences, comma-separated")
    return out


def mode_settings(settings: Settings, mode: str, min_posts: int | None = None) -> Settings:
    """The settings a way of learning runs with (KILROY_COMMONS, KILROY_COMMUNITY_MIN_POSTS)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}")
    t = settings.training
    if mode == "community":
        t = dataclasses.replace(t, commons="off")
    elif mode == "shared":
        t = dataclasses.replace(t, commons="opt-out", community_min_posts=10**6)
    else:
        t = dataclasses.replace(
            t, commons="opt-out", community_min_posts=t.community_min_posts if min_posts is None else min_posts
        )
    return settings.replace(training=t)


@dataclass(frozen=True)
class ServerNight:
    """One server's night: what served it and how its audience engaged."""

    night: int
    adapter: str  # the reference that served ("g101/v0002", "commons/v0003", "base")
    expected_score: float  # the audience's analytic expected score of fresh samples of that adapter
    mean_score: float  # the night's sampled reactions, scored by the real scoring code
    posts: int
    trained: str = ""  # what the night's training of its own lineage did ("promoted", a skip reason, ...)


@dataclass
class ServerResult:
    audience: str
    community: str
    nights: list[ServerNight] = field(default_factory=list)

    @property
    def lift(self) -> float:
        first, last = self.nights[0].expected_score, self.nights[-1].expected_score
        return last / first if first > 0 else 1.0


@dataclass
class CommunitiesResult:
    mode: str
    seed: int
    servers: list[ServerResult] = field(default_factory=list)
    commons: list[str] = field(default_factory=list)  # per night, what the commons' training did

    def as_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "seed": self.seed,
            "commons": self.commons,
            "communities": [
                {
                    "audience": s.audience,
                    "community": s.community,
                    "lift": s.lift,
                    "nights": [dataclasses.asdict(n) for n in s.nights],
                }
                for s in self.servers
            ],
        }


def summarise(results: Sequence[CommunitiesResult]) -> dict[str, Any]:
    """Several seeds of one mode: each community's mean lift and 95% interval over seeds, and every run."""
    out = []
    for i, server in enumerate(results[0].servers):
        lifts = [r.servers[i].lift for r in results]
        mean, lo, hi = mean_ci(lifts)
        out.append(
            {
                "audience": server.audience,
                "community": server.community,
                "lift": mean,
                "lift_ci": [lo, hi],
                "lifts": lifts,
            }
        )
    return {
        "mode": results[0].mode,
        "seeds": [r.seed for r in results],
        "communities": out,
        "runs": [r.as_json() for r in results],
    }


async def publish_server_night(
    storage: Storage,
    community: Community,
    samples: Sequence[Any],
    *,
    guild_id: int,
    start: float,
    first_id: int,
    rng: random.Random,
) -> list[Any]:
    """Post a night's samples in one server (two channels of its own, spread over 12 hours), let its audience react
    through the real storage calls, and return the night's records of that server."""
    channels = (guild_id * 10 + 1, guild_id * 10 + 2)
    for i, smp in enumerate(samples):
        at = start + i * (12 * 3600.0 / max(1, len(samples)))
        await storage.add_post(
            NewPost.from_sample(
                smp, channel_id=channels[i % 2], created_at=at, message_id=first_id + i, guild_id=guild_id
            )
        )
        await react(storage, community, first_id + i, smp.text, at + 300, rng)
    return await storage.post_records(created_after=start - 1, created_before=start + DAY, guild_id=guild_id)


async def simulate_communities(
    settings: Settings,
    audiences: Sequence[AudienceSpec],
    *,
    mode: str = "commons",
    nights: int,
    posts_per_night: int,
    seed: int,
    workdir: Path,
    min_posts: int | None = None,
    eval_samples: int = 256,
    on_event: Callable[[dict[str, Any]], None] | None = None,
) -> CommunitiesResult:
    """Run the servers' nights in a fresh workspace with one way of learning (`MODES`); return each server's nights."""
    from bot.adapters.commons import CommonsPolicy
    from bot.adapters.lineages import Lineages
    from bot.adapters.serving import AdapterService
    from bot.services import open_services
    from bot.sim.nights import _fresh_dir, _with_seed
    from bot.training.runner import TrainingRunner

    emit = on_event or (lambda _e: None)
    _fresh_dir(workdir)
    settings = mode_settings(simulation_settings(settings, workdir), mode, min_posts)
    settings = settings.replace(training=_with_seed(settings, seed))
    settings = settings.replace(generation=dataclasses.replace(settings.generation, best_of=1))
    t = settings.training
    formula = settings.scoring
    rng = random.Random(seed)
    guilds = [FIRST_GUILD + i for i in range(len(audiences))]
    names = [community_id(g) for g in guilds]
    members = [a.community(random.Random(f"{a.name}/{seed}/{i}")) for i, a in enumerate(audiences)]
    result = CommunitiesResult(mode, seed, [ServerResult(a.name, c) for a, c in zip(audiences, names, strict=True)])
    policy = CommonsPolicy(mode=t.commons, min_posts=t.community_min_posts)
    lineages = Lineages(settings.adapters_dir, policy=policy)
    async with open_services(settings, in_process_training=True) as services:
        storage, generator = services.storage, services.generator
        served = {
            c: AdapterService(lineages.store(c), generator, community=c, default=False) for c in [COMMONS, *names]
        }
        runners = {
            c: TrainingRunner(
                settings,
                storage,
                lineages.store(c),
                swap=served[c].use,
                in_process=True,
                community=c,
                parent=lambda c=c: policy.parent(c, lineages),
            )
            for c in served
        }
        training = [COMMONS] if mode == "shared" else names if mode == "community" else [COMMONS, *names]
        message_id = 1
        for night in range(nights):
            start = EPOCH + night * DAY
            await policy.refresh(storage, now=start, settle_hours=settings.scoring.settle_hours)
            evaluated: dict[str, list[str]] = {}  # one set of evaluation samples per adapter a night
            for i, (c, guild, audience) in enumerate(zip(names, guilds, members, strict=True)):
                reference = lineages.serving(c)
                owner, version = parse_ref(reference)
                if owner is not None:
                    await served[owner].ensure_resident(version)
                emit({"event": "night", "night": night, "stage": "posting", "community": c, "adapter": reference})
                samples = await generator.generate(
                    posts_per_night,
                    prompt=settings.generation.prompt,
                    seed=seed * 7919 + night * 131 + i,
                    adapter=reference,
                )
                records = await publish_server_night(
                    storage, audience, samples, guild_id=guild, start=start, first_id=message_id, rng=rng
                )
                message_id += len(samples)
                if reference not in evaluated:
                    held = await generator.generate(
                        eval_samples, prompt=settings.generation.prompt, seed=seed * 7919 + 104_729, adapter=reference
                    )
                    evaluated[reference] = [s.text for s in held]
                expected = statistics.fmean(audience.expected_scores(evaluated[reference], formula))
                mean = sum(score_post(r, formula) for r in records) / max(1, len(records))
                result.servers[i].nights.append(ServerNight(night, reference, expected, mean, len(records)))
            if night == nights - 1:
                break
            for c in training:
                emit({"event": "night", "night": night, "stage": "training", "community": c})
                run = await runners[c].run("simulate", now=start + DAY - 1)
                what = "promoted" if run.promoted else (run.reason or run.status)
                emit({"event": "trained", "night": night, "community": c, "status": run.status, "what": what})
                if c == COMMONS:
                    result.commons.append(what)
                else:
                    i = names.index(c)
                    last = result.servers[i].nights[-1]
                    result.servers[i].nights[-1] = dataclasses.replace(last, trained=what)
    return result


__all__ = ["BASE", "MODES", "CommunitiesResult", "audiences_from", "mode_settings", "simulate_communities", "summarise"]
