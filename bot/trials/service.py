"""Live A/B trials in the running bot: start one for a gate-passing candidate, pick each post's arm, decide.

The statistics live in `sequential.py` (pure); this service wires them to storage, the generator and the adapter
service. Rules:
- A candidate that passes the offline gate is loaded next to the serving adapter (both resident, pinned) and
  checked with one generation; then a trial row is written. Nothing is swapped and the `CURRENT` pointer stays on
  the incumbent, so a restart resumes the same trial serving the same incumbent.
- Each scheduled post asks `choose()` for its arm: the k-th post of the trial gets `assign_arm(seed, k, share)`,
  and the post is stored with its trial and arm. Story mode never asks: it keeps writing with the incumbent.
- `check()` replays the trial's settled posts (rewards against the channel baselines frozen at the start) through
  the sequential test. A `promote` verdict goes through the normal promotion path (`AdapterService.use`: load,
  swap, pointer last) before the trial is closed, so a crash in between re-decides the same way on restart.
- While a trial runs, the scheduled nightly training waits (so the trial can accumulate the posts it needs); a
  moderator's `/retrain` trains from the incumbent and its candidate, if it passes the gate, replaces the trial.

The guard (KILROY_AB_MODE=guard, the default) turns the trial into a harm guardrail, so that learning never waits:
- A gate-passing candidate serves at once (the promotion path: load, swap, pointer last) and the adapter it
  replaces becomes the trial's incumbent, the anchor, writing `1 - share` of the posts.
- The next night trains from the candidate, as always from what serves. A newer gate-passing candidate takes over
  the candidate arm of the running guard; the anchor stays and the evidence carries on. The test stays valid: its
  e-processes bound the error rates for arm means that change at any time (`sequential.py`), so "the serving arm
  was at least as good as the anchor at every post" is what a false alarm must break.
- `keep` (the serving chain engages worse than the anchor) rolls back to the anchor; `promote` (better) and
  `futile` (no harm shown within the post budget) end the guard with the candidate serving. An operator's stop
  rolls back too. A trial is a guard exactly when its candidate is the pointer's adapter.

Per community (issue 24): one TrialService per lineage (`community`), at most one running trial per community.
Its rows name adapters by reference ("g123/v0005"); the anchor or incumbent is whatever served the community,
which may be another lineage's ("commons/v0002" before the server's first adapter): rolling back to it points the
server's own lineage at `base`, so the policy serves the commons again. Only that server's posts set its baselines.
The trials of all communities pin their arms through one `Pins`, so none unpins another's.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path

from bot.adapters.serving import AdapterService
from bot.config.settings import Settings
from bot.domain.community import guild_of
from bot.domain.records import BASE
from bot.domain.scoring import score_post
from bot.engine.generator import Generator
from bot.storage import NewPost, Storage, Trial
from bot.trials.sequential import (
    CANDIDATE,
    PROMOTING,
    VERDICT_TEXT,
    Arm,
    Baseline,
    Decision,
    TrialConfig,
    assign_arm,
    baselines,
    group_scores,
    run_test,
    trial_reward,
)

log = logging.getLogger(__name__)

ROLLBACK = frozenset({"keep", "stopped"})  # a guard's verdicts that take the candidate off
GUARD_TEXT = {
    "promote": "the serving adapter engages better than the anchor: it stays",
    "keep": "the serving adapter engages worse than the anchor: rolled back",
    "futile": "no harm found within the post budget: the serving adapter stays",
    "stopped": "stopped by an operator: rolled back to the anchor",
}

Announce = Callable[[str], Awaitable[None]]


class Pins:
    """The adapters each community's trial keeps resident; the generator pins their union."""

    def __init__(self, generator: Generator) -> None:
        self.generator = generator
        self._by: dict[str | None, set[str]] = {}

    def set(self, community: str | None, names: set[str]) -> None:
        """Exactly `names` are this community's pinned adapters."""
        self._by[community] = set(names)
        self.generator.pin(set().union(*self._by.values()))


class NoTrial(Exception):
    """No A/B trial is running."""

    def __init__(self) -> None:
        super().__init__("no A/B trial is running")


@dataclass(frozen=True)
class ArmChoice:
    """Who writes the next post: the trial, the arm, and the adapter that arm serves."""

    trial_id: int
    arm: Arm
    adapter: str


@dataclass(frozen=True)
class TrialStatus:
    """What operators see: the trial, posts per arm (settled or not) and the test's state over settled ones."""

    trial: Trial
    posts: dict[str, int]
    decision: Decision

    def text(self) -> str:
        """A few lines for `/adapter trial` and `kilroy adapters trial`."""
        t, d = self.trial, self.decision
        head = f"Trial #{t.id}: candidate `{t.candidate}` against incumbent `{t.incumbent}`"
        if not t.active:
            head += f" — ended: {VERDICT_TEXT.get(t.verdict or '', t.verdict)} ({t.decided_by})"
        posts = f"posts: candidate {self.posts.get('candidate', 0)}, incumbent {self.posts.get('incumbent', 0)}"
        setup = f"share {t.share:.2f} · alpha {t.alpha:g} · futility stop at {t.max_posts} settled posts"
        return f"{head}\n{posts} · {setup}\n{d.summary()}"


async def evaluate_trial(storage: Storage, settings: Settings, trial: Trial, *, now: float) -> TrialStatus:
    """Replay a trial's settled posts, in post order, through the sequential test; act on nothing."""
    settled_before = now - settings.scoring.settle_hours * 3600.0
    records = await storage.post_records(trial_id=trial.id, created_before=settled_before)
    formula = settings.scoring
    config = TrialConfig(share=trial.share, alpha=trial.alpha, max_posts=trial.max_posts)
    rewards = (
        (r.post.arm or "", trial_reward(score_post(r, formula), trial.baselines.get(r.post.channel_id), config.clip))
        for r in records
    )  # lazy: the replay stops at the first verdict
    state = run_test(rewards, config)
    return TrialStatus(trial, await storage.trial_post_counts(trial.id), state.decision())


class TrialService:
    """Runs at most one A/B trial at a time; see the module docstring for the rules."""

    def __init__(
        self,
        storage: Storage,
        adapters: AdapterService,
        generator: Generator,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        announce: Announce | None = None,
        community: str | None = None,
        serving: Callable[[], str] | None = None,
        path_of: Callable[[str], Path] | None = None,
        pins: Pins | None = None,
    ) -> None:
        self.storage, self.adapters, self.generator, self.settings = storage, adapters, generator, settings
        self.community = community  # the lineage (None: the one flat store before communities)
        # what serves the community now, as a reference (the policy: its own pointer, or the commons')
        self._serving = serving or (lambda: self.adapters.ref(self.adapters.store.current()))
        self._path_of = path_of or self.adapters.store.path  # a reference's folder (any lineage's)
        self.pins = pins or Pins(generator)
        self.clock = clock
        self.announce = announce  # KILROY_LOG_CHANNEL_ID through the bot, wired in bot/services.py
        self.new_seed: Callable[[], int] = lambda: secrets.randbits(31)  # the arm coin's seed (the simulation fixes it)

    def _pin(self, names: set[str]) -> None:
        self.pins.set(self.community, names)

    def _current(self) -> str:
        """The reference of this lineage's own pointer."""
        return self.adapters.ref(self.adapters.store.current())

    async def _use(self, reference: str) -> None:
        """Serve `reference` through the promotion path; another lineage's (the commons) by pointing this one at
        base, so that the policy serves it again."""
        version = self.adapters.version(reference)
        await self.adapters.use(BASE if version is None else version)

    @property
    def enabled(self) -> bool:
        """Trials are on unless KILROY_AB_SHARE is 0 (then a gate-passing candidate is swapped in at once)."""
        return self.settings.trials.share > 0

    async def _say(self, text: str) -> None:
        log.info("%s", text.replace("\n", " · "))
        if self.announce is not None:
            try:
                await self.announce(text)
            except Exception:
                log.warning("could not announce a trial event", exc_info=True)

    # --- starting ----------------------------------------------------------------------------------------------------

    async def on_candidate(self, candidate: str, run_id: int | None = None) -> bool:
        """The promotion sequence's hook for a gate-passing candidate: True if it went on a trial instead of being
        swapped in; False when trials are off (KILROY_AB_SHARE=0), and the sequence swaps it in as before."""
        if not self.enabled:
            return False
        reference = self.adapters.ref(candidate)  # the run names a version of this lineage
        if self.settings.trials.mode == "guard":
            if await self.storage.active_trial(self.community) is None and self._current() == reference:
                return False  # serving already (a guard's start interrupted by a crash): the sequence finishes it
            await self.guard(reference, run_id=run_id)
        else:
            await self.start(reference, run_id=run_id)
        return True

    async def guard(self, candidate: str, *, run_id: int | None = None) -> Trial:
        """Serve `candidate` (a reference) at once, guarded against the anchor (what served before it, or the running
        guard's anchor)."""
        current = await self.storage.active_trial(self.community)
        if current is not None and current.candidate == candidate:
            return current  # already guarded (an interrupted promotion sequence being finished)
        anchor = current.incumbent if current is not None else self._serving()
        if candidate == anchor:
            raise ValueError(f"{candidate!r} is already serving; there is nothing to compare")
        await self._ensure_loaded(candidate)
        await self._ensure_loaded(anchor)
        samples = await self.generator.generate(1, adapter=candidate, prompt=self.settings.generation.prompt)
        if not samples:
            raise RuntimeError(f"adapter {candidate!r} produced nothing")
        await self._use(candidate)  # serves now: load, swap, pointer last
        self._pin({anchor, candidate})
        if current is not None and await self.storage.move_trial_candidate(
            current.id, candidate=candidate, run_id=run_id
        ):
            if current.run_id is not None:  # the superseded candidate served until now: its sequence is done
                await self.storage.set_run_stage(current.run_id, "promoted")
            await self._say(
                f"A/B guard #{current.id}: `{candidate}` now serves and takes over the candidate arm from "
                f"`{current.candidate}`; `{anchor}` keeps {1 - current.share:.0%} of posts as the anchor."
            )
            moved = await self.storage.get_trial(current.id)
            assert moved is not None
            return moved
        now = self.clock()
        cfg = self.settings.trials
        trial_id = await self.storage.start_trial(
            candidate=candidate,
            incumbent=anchor,
            run_id=run_id,
            share=cfg.share,
            alpha=cfg.alpha,
            max_posts=cfg.max_posts,
            seed=self.new_seed(),
            baselines=await self._baselines(now),
            at=now,
            community=self.community,
        )
        trial = await self.storage.get_trial(trial_id)
        assert trial is not None
        await self._say(
            f"A/B guard #{trial_id} started: `{candidate}` serves {cfg.share:.0%} of posts, `{anchor}` the rest, "
            f"and `{candidate}` is rolled back if the reactions show it worse (at most {cfg.max_posts} posts)."
        )
        return trial

    async def start(self, candidate: str, *, run_id: int | None = None, by: str = "training") -> Trial:
        """Load `candidate` (a reference) beside the serving adapter, check it generates, and open a trial."""
        current = await self.storage.active_trial(self.community)
        if current is not None and current.candidate == candidate:
            return current  # already on trial (an interrupted promotion sequence being finished)
        incumbent = self._serving()  # the pointer (through the policy): what serves, and what a restart serves
        if candidate == incumbent:
            raise ValueError(f"{candidate!r} is already serving; there is nothing to compare")
        await self._ensure_loaded(candidate)
        await self._ensure_loaded(incumbent)
        # health check: one generation with the candidate; an adapter that cannot write never reaches a post
        samples = await self.generator.generate(1, adapter=candidate, prompt=self.settings.generation.prompt)
        if not samples:
            raise RuntimeError(f"adapter {candidate!r} produced nothing")
        if current is not None:
            await self._end(current, "replaced", by, f"replaced by candidate {candidate}")
        now = self.clock()
        cfg = self.settings.trials
        trial_id = await self.storage.start_trial(
            candidate=candidate,
            incumbent=incumbent,
            run_id=run_id,
            share=cfg.share,
            alpha=cfg.alpha,
            max_posts=cfg.max_posts,
            seed=self.new_seed(),
            baselines=await self._baselines(now),
            at=now,
            community=self.community,
        )
        self._pin({incumbent, candidate})
        trial = await self.storage.get_trial(trial_id)
        assert trial is not None
        await self._say(
            f"A/B trial #{trial_id} started: candidate `{candidate}` writes {cfg.share:.0%} of posts, incumbent "
            f"`{incumbent}` the rest, until the community's reactions decide (at most {cfg.max_posts} settled posts)."
        )
        return trial

    async def _baselines(self, now: float) -> dict[int, Baseline]:
        # each channel's reward centre from its settled posts before the trial, frozen for the whole trial
        settled_before = now - self.settings.scoring.settle_hours * 3600.0
        guild = guild_of(self.community) if self.community is not None else None
        records = await self.storage.post_records(
            created_before=settled_before, limit=self.settings.scoring.baseline_window, guild_id=guild
        )
        formula = self.settings.scoring
        records = [r for r in records if r.post.kind == "post"]
        return baselines(group_scores([r.post.channel_id for r in records], [score_post(r, formula) for r in records]))

    async def _ensure_loaded(self, name: str) -> None:
        if not self.generator.is_resident(name):
            await self.generator.preload(name, self._path_of(name))

    async def restore(self) -> Trial | None:
        """At start: reload a running trial's candidate; a candidate that no longer loads ends its trial."""
        trial = await self.storage.active_trial(self.community)
        if trial is None:
            return None
        try:
            await self._ensure_loaded(trial.candidate)
            await self._ensure_loaded(trial.incumbent)
        except Exception as exc:
            log.exception("trial #%d: its adapters cannot be loaded", trial.id)
            await self._end(trial, "stopped", "restore", f"could not load its adapters at start: {exc}")
            return None
        self._pin({trial.incumbent, trial.candidate})
        log.info("resumed A/B trial #%d (%s against %s)", trial.id, trial.candidate, trial.incumbent)
        return trial

    async def running(self) -> Trial | None:
        """The running trial, if any (the scheduled nightly training waits while there is one)."""
        return await self.storage.active_trial(self.community)

    # --- posting -----------------------------------------------------------------------------------------------------

    async def choose(self) -> ArmChoice | None:
        """The arm of the next scheduled post, or None when no trial runs (then the serving adapter writes)."""
        trial = await self.storage.active_trial(self.community)
        if trial is None:
            return None
        index = sum((await self.storage.trial_post_counts(trial.id)).values())
        arm = assign_arm(trial.seed, index, trial.share)
        adapter = trial.candidate if arm == CANDIDATE else trial.incumbent
        await self._ensure_loaded(adapter)  # a trial started by another process (`kilroy train`) loads here
        self._pin({trial.incumbent, trial.candidate})
        return ArmChoice(trial.id, arm, adapter)

    @staticmethod
    def tag(post: NewPost, choice: ArmChoice | None) -> NewPost:
        """The post with its trial and arm recorded."""
        if choice is None:
            return post
        return replace(post, trial_id=choice.trial_id, arm=choice.arm)

    # --- deciding ----------------------------------------------------------------------------------------------------

    async def evaluate(self, trial: Trial) -> TrialStatus:
        """Replay the trial's settled posts through the sequential test (does not act on the verdict)."""
        return await evaluate_trial(self.storage, self.settings, trial, now=self.clock())

    async def check(self) -> TrialStatus | None:
        """Evaluate the running trial and act on a verdict (promote through the promotion path, or keep)."""
        trial = await self.storage.active_trial(self.community)
        if trial is None:
            return None
        status = await self.evaluate(trial)
        if status.decision.verdict is not None:
            await self._end(trial, status.decision.verdict, "test", status.decision.summary())
            ended = await self.storage.get_trial(trial.id)
            status = TrialStatus(ended or trial, status.posts, status.decision)
        return status

    async def status(self) -> TrialStatus | None:
        """The running trial (or the last one) with its figures."""
        trial = await self.storage.active_trial(self.community)
        if trial is None:
            recent = await self.storage.trials(limit=1, community=self.community)
            if not recent:
                return None
            trial = recent[0]
        return await self.evaluate(trial)

    async def stop(self, by: str) -> Trial:
        """End the running trial keeping the incumbent (operators)."""
        trial = await self.storage.active_trial(self.community)
        if trial is None:
            raise NoTrial()
        await self._end(trial, "stopped", by, "stopped by hand")
        return trial

    async def promote(self, by: str) -> Trial:
        """Promote the running trial's candidate by hand (operators); recorded with who did it."""
        trial = await self.storage.active_trial(self.community)
        if trial is None:
            raise NoTrial()
        await self._end(trial, "promoted_by_hand", by, "promoted by hand")
        return trial

    async def _end(self, trial: Trial, verdict: str, by: str, summary: str) -> None:
        # promotion (or a guard's rollback) first, through the one promotion path (load, swap, pointer last); the row
        # is closed after, so a crash in between leaves a trial that re-decides the same way on the next start
        guard = self._current() == trial.candidate
        keeps_candidate = verdict not in ROLLBACK if guard else verdict in PROMOTING
        if guard and not keeps_candidate:
            await self._use(trial.incumbent)  # rolled back to the anchor
        elif keeps_candidate:
            await self._use(trial.candidate)  # load, health-check, swap, pointer last
        # an operator ('user:<id>') is stored and logged as their label, never the id (see Storage.end_trial)
        member = int(by[5:]) if by.startswith("user:") and by[5:].isdigit() else None
        if not await self.storage.end_trial(
            trial.id, verdict=verdict, decided_by=by, summary=summary, at=self.clock(), member_id=member
        ):
            return  # someone else closed it first
        if member is not None:
            ended = await self.storage.get_trial(trial.id)
            by = ended.decided_by if ended is not None and ended.decided_by else "an operator"
        if trial.run_id is not None:  # the run's promotion sequence ends with the trial
            await self.storage.set_run_stage(trial.run_id, "promoted" if keeps_candidate else "kept")
        self._pin(set())
        outcome = f"now serving `{trial.candidate}`" if keeps_candidate else f"`{trial.incumbent}` serves"
        if guard:
            verdict_text = GUARD_TEXT.get(verdict, VERDICT_TEXT[verdict])
            await self._say(f"A/B guard #{trial.id} ended: {verdict_text} ({by}); {outcome}.\n{summary}")
            return
        await self._say(f"A/B trial #{trial.id} ended: {VERDICT_TEXT[verdict]} ({by}); {outcome}.\n{summary}")
