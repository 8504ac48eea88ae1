"""`kilroy simulate --ab`: the live A/B procedure in the simulated community.

The nights loop of `bot/sim/nights.py`, with trials on as in the bot: a night's candidate that passes the gate
goes on a trial (`TrialService`, the bot's own service) instead of being served; each post of a trial is written
by the arm the trial's coin gives it and records that arm; the audience reacts; once posts settle the sequential
test decides. With KILROY_AB_MODE=guard (the default) the candidate serves at once, its predecessor is the anchor
arm, every night trains, and a newer candidate takes over the guard's candidate arm; with `trial`, the next night
trains only if no trial is still deciding. Each trial's verdict
is compared with what the audience's *expected* engagement says was right: the mean expected score
(`Community.expected_scores`: the analytic reaction probabilities, no sampling noise) of `eval_samples` fresh
samples of each arm.
"""

from __future__ import annotations

import dataclasses
import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.config.settings import Settings
from bot.domain.scoring import score_post
from bot.sim.nights import CHANNELS, DAY, EPOCH, AudienceSpec, _fresh_dir, react
from bot.storage import NewPost
from bot.training.objective import distinct_n
from bot.trials.sequential import CANDIDATE, PROMOTING, assign_arm
from bot.trials.service import ROLLBACK

if TYPE_CHECKING:
    from bot.engine.generator import Sample


@dataclass
class TrialRecord:
    """One trial as the simulation saw it."""

    id: int
    candidate: str
    incumbent: str
    started_night: int
    verdict: str | None = None
    ended_night: int | None = None
    settled: int = 0
    expected: dict[str, float] = field(default_factory=dict)  # adapter -> mean expected score of fresh samples
    guard: bool = (
        False  # a guard (KILROY_AB_MODE=guard): the candidate served from the start, the anchor is `incumbent`
    )

    @property
    def right(self) -> str | None:
        """What the expected scores say the verdict should be: `promote` or `keep`."""
        if len(self.expected) < 2:
            return None
        return "promote" if self.expected[self.candidate] > self.expected[self.incumbent] else "keep"

    @property
    def outcome(self) -> str:
        """A trial: promoted / kept / ended (futile or replaced) / undecided. A guard: rolled_back (`keep` or an
        operator's stop) / serving (the candidate stays: `promote`, or `futile`, no harm shown) / guarding."""
        if self.guard:
            if self.verdict is None:
                return "guarding"
            return "rolled_back" if self.verdict in ROLLBACK else "serving"
        if self.verdict is None:
            return "undecided"
        if self.verdict in PROMOTING:
            return "promoted"
        return "kept" if self.verdict == "keep" else "ended"


async def simulate_ab(
    settings: Settings,
    audience: AudienceSpec,
    *,
    nights: int,
    posts_per_night: int,
    seed: int,
    workdir: Path,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    eval_samples: int = 256,
) -> dict[str, Any]:
    """Run the nights loop with live A/B trials; return the `--json` result."""
    from bot.services import open_services

    emit = on_event or (lambda _e: None)
    _fresh_dir(workdir)
    settings = settings.replace(
        db_path=workdir / "kilroy.db",
        adapters_dir=workdir / "adapters",
        training=dataclasses.replace(settings.training, seed=seed),
    )
    if settings.trials.share <= 0:
        settings = settings.replace(trials=dataclasses.replace(settings.trials, share=0.5))
    formula = settings.scoring
    rng = random.Random(seed)
    community = audience.community(random.Random(f"{audience.name}/{seed}"))  # as `simulate` draws it
    clock = [EPOCH]
    out_nights: list[dict[str, Any]] = []
    trials: dict[int, TrialRecord] = {}
    message_id = 1
    async with open_services(settings, in_process_training=True) as services:
        storage, generator, service = services.storage, services.generator, services.trials
        service.clock = lambda: clock[0]  # the simulated time: posts settle by it
        service.new_seed = lambda: rng.randrange(2**31)  # reproducible arms for a given --seed

        async def expected(adapter: str | None) -> float:
            # fresh samples, the same seed every time (as `simulate` scores a night): adapters differ by weights alone
            samples = await generator.generate(
                max(2, eval_samples), prompt=settings.generation.prompt, adapter=adapter, seed=seed * 7919 + 104_729
            )
            return statistics.fmean(community.expected_scores([s.text for s in samples], formula))

        for night in range(nights):
            start = EPOCH + night * DAY
            clock[0] = start
            trial = await storage.active_trial()
            emit({"event": "night", "night": night, "stage": "posting", "adapter": generator.active})
            samples, arms = await _night_samples(generator, settings, trial, storage, posts_per_night, seed, night)
            for i, (smp, arm) in enumerate(zip(samples, arms, strict=True)):
                at = start + i * (12 * 3600.0 / max(1, len(samples)))
                post = NewPost.from_sample(
                    smp, channel_id=CHANNELS[i % len(CHANNELS)], created_at=at, message_id=message_id + i
                )
                if trial is not None:
                    post = dataclasses.replace(post, trial_id=trial.id, arm=arm)
                await storage.add_post(post)
                await react(storage, community, message_id + i, smp.text, at + 300, rng)
            records = await storage.post_records(created_after=start - 1, created_before=start + DAY)
            message_id += len(samples)
            texts = [s.text for s in samples]
            night_json: dict[str, Any] = {
                "night": night,
                "mean_score": statistics.fmean(score_post(r, formula) for r in records) if records else 0.0,
                "expected_score": await expected(None),  # the served adapter (the incumbent during a trial)
                "posts": len(records),
                "adapter": generator.active,
                "distinct2": distinct_n(texts),
                "promoted": None,
                "trial": None,
            }
            # the end of the day: the day's posts have settled; the test looks at them
            clock[0] = start + DAY - 1
            if trial is not None:
                status = await service.check()
                rec = trials[trial.id]
                assert status is not None
                rec.settled = status.decision.settled
                night_json["trial"] = {
                    "id": trial.id,
                    "candidate": trial.candidate,
                    "incumbent": trial.incumbent,
                    "arms": {a: arms.count(a) for a in ("candidate", "incumbent")},
                    "settled": status.decision.settled,
                    "estimate": status.decision.estimate,
                    "decision": status.trial.verdict,
                }
                if status.trial.verdict is not None:
                    rec.verdict, rec.ended_night = status.trial.verdict, night
                    night_json["promoted"] = status.trial.verdict in PROMOTING
                    night_json["rolled_back"] = settings.trials.mode == "guard" and status.trial.verdict in ROLLBACK
                    night_json["trial"]["right"] = rec.right
            # the night: a guard never holds training back; a superiority trial does until it decides (the bot's rule)
            guard = settings.trials.mode == "guard"
            if night < nights - 1 and (guard or await storage.active_trial() is None):
                emit({"event": "night", "night": night, "stage": "training"})
                run = await services.training.run("simulate --ab", None, now=start + DAY - 1)
                night_json["gate"] = run.reason
                if run.trial:
                    started = await storage.active_trial()
                    assert started is not None
                    rec = trials.get(started.id) or TrialRecord(
                        started.id, started.candidate, started.incumbent, night, guard=guard
                    )
                    rec.candidate = started.candidate  # a guard's candidate arm moves to the newest candidate
                    rec.expected = {
                        started.candidate: await expected(started.candidate),
                        started.incumbent: await expected(started.incumbent),
                    }
                    trials[started.id] = rec
                    night_json["trial_started"] = {"id": started.id, "candidate": started.candidate}
            out_nights.append(night_json)
            emit({"event": "night_done", **{k: night_json[k] for k in ("night", "mean_score", "adapter")}})
    records = list(trials.values())
    summary = trial_summary(records, settings.trials.mode)
    base = out_nights[0]["expected_score"] if out_nights else 0.0
    return {
        "audience": audience.name,
        "seed": seed,
        "ab": {"share": settings.trials.share, "alpha": settings.trials.alpha, "max_posts": settings.trials.max_posts},
        "nights": out_nights,
        "trials": [dataclasses.asdict(r) | {"right": r.right, "outcome": r.outcome} for r in records],
        "trial_summary": summary,
        "baseline_mean_score": out_nights[0]["mean_score"] if out_nights else 0.0,
        "final_mean_score": out_nights[-1]["mean_score"] if out_nights else 0.0,
        "lift": (out_nights[-1]["expected_score"] / base) if base > 0 else 1.0,
        "note": _note(summary),
    }


async def _night_samples(
    generator: Any, settings: Settings, trial: Any, storage: Any, n: int, seed: int, night: int
) -> tuple[list[Sample], list[str | None]]:
    """The night's posts: the serving adapter's, or, during a trial, each written by its arm (arms from the coin)."""
    prompt = settings.generation.prompt
    if trial is None:
        return await generator.generate(n, prompt=prompt, seed=seed * 7919 + night), [None] * n
    first = sum((await storage.trial_post_counts(trial.id)).values())
    arms = [assign_arm(trial.seed, first + i, trial.share) for i in range(n)]
    pools: dict[str, list[Sample]] = {}
    for arm, adapter in (("candidate", trial.candidate), ("incumbent", trial.incumbent)):
        k = sum(a == arm for a in arms)
        pools[arm] = (
            await generator.generate(
                k, prompt=prompt, adapter=adapter, seed=seed * 7919 + night * 2 + (arm == CANDIDATE)
            )
            if k
            else []
        )
    return [pools[a].pop() for a in arms], list(arms)


def trial_summary(records: Sequence[TrialRecord], mode: str) -> dict[str, Any]:
    """Count the trials' outcomes against what the expected scores say was right.

    A superiority trial (`mode` "trial") is right when a promoted candidate is truly better and a kept-out one truly
    worse. A guard (`mode` "guard") serves its candidate from the start, so what counts is the other way round: a
    rollback is right when the candidate is truly worse, and a candidate still serving at the end (confirmed, no harm
    shown, or still guarded) that is truly worse is the guard's miss (`worse_serving`).
    """
    worse = [r.right == "keep" for r in records]
    if mode == "guard":
        rolled_back = [r.outcome == "rolled_back" for r in records]
        serving = [r.outcome in ("serving", "guarding") for r in records]
        return {
            "mode": "guard",
            "trials": len(records),
            "rolled_back": sum(rolled_back),
            "confirmed": sum(r.verdict in PROMOTING for r in records),
            "no_harm_shown": sum(r.outcome == "serving" and r.verdict not in PROMOTING for r in records),
            "guarding": sum(r.outcome == "guarding" for r in records),
            "right": sum(b and w for b, w in zip(rolled_back, worse, strict=True))
            + sum(r.outcome == "serving" and r.right == "promote" for r in records),
            "wrongly_rolled_back": sum(b and r.right == "promote" for b, r in zip(rolled_back, records, strict=True)),
            "worse_serving": sum(s and w for s, w in zip(serving, worse, strict=True)),
            "candidates_truly_better": sum(r.right == "promote" for r in records),
        }
    return {
        "mode": "trial",
        "trials": len(records),
        "promoted": sum(r.outcome == "promoted" for r in records),
        "kept": sum(r.outcome == "kept" for r in records),
        "ended": sum(r.outcome == "ended" for r in records),
        "undecided": sum(r.outcome == "undecided" for r in records),
        "right": sum(
            r.right == ("promote" if r.outcome == "promoted" else "keep")
            for r in records
            if r.outcome in ("promoted", "kept")
        ),
        "wrongly_promoted": sum(r.outcome == "promoted" and w for r, w in zip(records, worse, strict=True)),
        "wrongly_kept": sum(r.outcome == "kept" and r.right == "promote" for r in records),
        "candidates_truly_better": sum(r.right == "promote" for r in records),
    }


def _note(s: dict[str, Any]) -> str:
    if s.get("mode") == "guard":
        return (
            f"{s['trials']} guard(s) started (each gate-passing candidate served at once, its predecessor the "
            f"anchor): {s['rolled_back']} rolled back as worse, {s['confirmed']} confirmed better, "
            f"{s['no_harm_shown']} ended with no harm shown, {s['guarding']} still guarding at the end. "
            f"{s['right']} decided guard(s) agree with the expected scores ({s['wrongly_rolled_back']} wrongly rolled "
            f"back); {s['worse_serving']} truly worse candidate(s) still serve; "
            f"{s['candidates_truly_better']} candidate(s) were truly better by expected score."
        )
    return (
        f"{s['trials']} candidate(s) passed the gate and went on trial: {s['promoted']} promoted, {s['kept']} kept "
        f"out as worse, {s['ended']} ended without a verdict, {s['undecided']} still undecided at the end. Of the "
        f"{s['promoted'] + s['kept']} decided, {s['right']} agree with the expected scores "
        f"({s['wrongly_promoted']} wrongly promoted, {s['wrongly_kept']} wrongly kept); "
        f"{s['candidates_truly_better']} candidate(s) were truly better by expected score."
    )


def promotions(nights: Sequence[dict[str, Any]]) -> list[int]:
    """The nights on which a trial promoted its candidate (for the plot's markers)."""
    return [n["night"] for n in nights if n.get("promoted")]
