"""One training run over what the database holds: score, normalise, train, gate, commit.

Runs in the training worker process (the bot's path, `bot.training.worker`), or in-process for `kilroy train`
and the simulation: the same code in every case, always under the training lock (`bot.training.runner`). It never
moves the adapter pointer: it commits the candidate, records the gate's verdict and claims its posts in one
transaction; promotion then marks the posts trained and promotes. Nothing is marked before the candidate is
safely on disk, so a crash at any point loses no data (the earlier Kilroy cleared a night's posts before scoring
them, and lost them when scoring failed).

Per community (issue 24): `run_training(..., store=lineages.store("g123"), community="g123", parent=REF)` trains
that server's lineage on that server's settled posts only (the commons: posts made outside any server), fits its
reward model into its own folder (`adapters/g123/reward_model.json`), starts from `parent`, the reference that
serves the community now (its own adapter, or the commons' for its first one), and records the run under the
community. Without `community`, one flat store as before.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict

from bot.adapters.lineages import Lineages
from bot.adapters.store import BASE, AdapterStore
from bot.config.settings import Settings
from bot.domain.commons import commons_batch, pooled_guilds, trains_own
from bot.domain.community import COMMONS, guild_of
from bot.domain.records import PostRecord, RunResult
from bot.domain.scoring import normalise_rewards, score_post
from bot.logs import bind_log_context
from bot.storage import Storage
from bot.training.dataset import TrainingExample, build_examples, policy_samples
from bot.training.gate import decide, gate_config
from bot.training.result import Progress
from bot.training.reward_model import REWARD_MODEL_FILE, model_rewards, save_reward_model

log = logging.getLogger(__name__)

OnProgress = Callable[[Progress], None]


async def run_training(
    settings: Settings,
    storage: Storage,
    store: AdapterStore,
    *,
    now: float | None = None,
    reason: str = "manual",
    on_progress: OnProgress | None = None,
    community: str | None = None,
    parent: str | None = None,
) -> RunResult:
    """Train one new adapter version from settled, untrained posts; promote it if the gate passes.

    `community` scopes the posts and the run to one lineage (`store` is its store); `parent` is the reference to
    train from (default: the store's own pointer)."""
    # in a copy of the caller's context, so that the run id bound below names this run's lines only (bot/logs.py)
    run = _run_training(
        settings,
        storage,
        store,
        now=now,
        reason=reason,
        on_progress=on_progress,
        community=community,
        parent=parent,
    )
    return await asyncio.create_task(run, context=contextvars.copy_context())


async def _run_training(
    settings: Settings,
    storage: Storage,
    store: AdapterStore,
    *,
    now: float | None,
    reason: str,
    on_progress: OnProgress | None,
    community: str | None = None,
    parent: str | None = None,
) -> RunResult:
    from bot.training.trainer import train_adapter

    emit = on_progress or (lambda _event: None)
    now = time.time() if now is None else now
    formula = settings.scoring
    run_id = await storage.start_run(reason, at=now, community=community)
    bind_log_context(run=run_id)
    settled_before = now - settings.scoring.settle_hours * 3600.0
    # the trailing window: already-trained posts form each channel's baseline; untrained ones are the batch
    guild = guild_of(community) if community is not None else None
    records = await storage.post_records(
        created_before=settled_before,
        limit=settings.scoring.baseline_window * (4 if community == COMMONS else 1),  # the commons pools servers
        guild_id=guild,
    )
    claim: list[int] | None = None  # None: the run claims every post it trains on
    if community == COMMONS:  # the pooled posts of every server that allows it (bot/domain/commons.py)
        records, fresh, claim = await _commons_inputs(settings, storage, store, records)
    else:
        fresh = [r for r in records if r.post.trained_at is None and r.post.trained_run is None]
        wait = await _waits_for_commons(settings, storage, guild, settled_before)
        if wait is not None:
            await storage.finish_run(run_id, status="skipped", at=time.time(), message=wait)
            emit(Progress("skipped", reason=wait))
            log.info("run %d skipped: %s", run_id, wait)
            return RunResult("skipped", run_id, reason=wait)
    history: dict[int, list[float]] = defaultdict(list)
    for r in records:
        if r.post.trained_at is not None:
            history[r.post.channel_id].append(score_post(r, formula))
    if len(fresh) < settings.training.min_posts:
        msg = f"only {len(fresh)} settled untrained posts (need {settings.training.min_posts})"
        await storage.finish_run(run_id, status="skipped", at=time.time(), message=msg)
        emit(Progress("skipped", reason=msg))
        log.info("run %d skipped: %s", run_id, msg)
        return RunResult("skipped", run_id, reason=msg)

    scores = [score_post(r, formula) for r in fresh]
    reward_model = None
    if settings.training.reward == "model":
        # pooled over the whole trailing window, so weak effects add up across nights
        t = settings.training
        # best-of-N posts are trained through their candidates, the policy's own draws (bot/training/dataset.py)
        drawn = policy_samples(fresh, await storage.post_candidates(r.post.id for r in fresh))
        reward_model, rewards = model_rewards(
            records, drawn, formula, length_neutral=t.length_neutral, repeat_penalty=t.repeat_penalty
        )
        # the posting path ranks tomorrow's candidates with it (it ignores a fit without signal)
        await asyncio.to_thread(save_reward_model, reward_model, store.root / REWARD_MODEL_FILE)  # this lineage's
        examples = [
            TrainingExample(d.post_id, d.prompt_ids, d.completion_ids, r) for d, r in zip(drawn, rewards, strict=True)
        ]
        if reward_model.p_value > settings.training.reward_max_p:
            msg = (
                f"no signal: over {reward_model.posts} settled posts the reward model fits no better than shuffled "
                f"scores (p={reward_model.p_value:.2f} > {settings.training.reward_max_p}); nothing to learn tonight"
            )
            await storage.finish_run(run_id, status="skipped", at=time.time(), message=msg)
            emit(Progress("skipped", reason=msg))
            log.info("run %d skipped: %s", run_id, msg)
            return RunResult("skipped", run_id, reason=msg, metrics={"reward_p": reward_model.p_value})
    else:
        # the night's own scores exist for the sent posts only: a best-of-N post trains as sent (biased towards
        # what the reward model picked); best-of-N is meant for KILROY_REWARD=model
        rewards = normalise_rewards(scores, [r.post.channel_id for r in fresh], history=history)
        examples = build_examples(fresh, rewards)
    post_ids = sorted({e.post_id for e in examples})
    if parent is None:
        parent = store.current()
        parent_path = None if parent == BASE else store.path(parent)
    else:  # a reference, perhaps of another lineage (a community's first adapter starts from the commons)
        parent_path = None if parent == BASE else Lineages(settings.adapters_dir).path(parent)
    emit(Progress("start", run_id=run_id, posts=len(post_ids), examples=len(examples), parent=parent))
    tmp = store.new_temp_dir()
    try:
        candidate = await asyncio.to_thread(
            train_adapter,
            examples,
            model_settings=settings.model,
            training=settings.training,
            generation=settings.generation,
            data_dir=settings.data_dir,
            parent_path=parent_path,
            out_dir=tmp,
            on_progress=emit,
            reward_model=reward_model,
        )
        metrics = {**candidate.metrics, "mean_score": sum(scores) / len(scores)}
        if reward_model is not None:
            metrics.update(
                reward_signal=reward_model.signal, reward_p=reward_model.p_value, reward_ridge=reward_model.ridge
            )
        decision = decide(candidate.evaluation, gate_config(settings.training), loss=metrics["loss"])
        meta = {
            "created_at": time.time(),
            "parent": parent,
            "run_id": run_id,
            "reason": reason,
            "metrics": metrics,
            "accepted": decision.accepted,
            "gate": decision.reason,
            "data": {
                "posts": len(post_ids),
                "examples": len(examples),
                "from": fresh[0].post.created_at,
                "to": fresh[-1].post.created_at,
            },
            "train_config": {
                k: (str(v) if not isinstance(v, int | float | str) else v) for k, v in asdict(settings.training).items()
            },
            "model": settings.model.name,
        }
        name = store.commit(tmp, meta)
    except BaseException as exc:
        store.discard(tmp)
        await storage.finish_run(run_id, status="failed", at=time.time(), message=f"{type(exc).__name__}: {exc}")
        raise
    await storage.commit_run(
        run_id,
        adapter=name,
        accepted=decision.accepted,
        message=decision.reason,
        metrics=metrics,
        post_ids=post_ids if claim is None else sorted(set(claim) & set(post_ids)),
    )
    log.info(
        "run %d: committed %s (gate: %s, %s)",
        run_id,
        name,
        "accepted" if decision.accepted else "refused",
        decision.reason,
    )
    return RunResult("done", run_id, name, parent, decision.accepted, False, decision.reason, metrics)


async def _commons_inputs(
    settings: Settings, storage: Storage, store: AdapterStore, records: list[PostRecord]
) -> tuple[list[PostRecord], list[PostRecord], list[int]]:
    """The commons' window, batch and claimed posts: the servers that pool (KILROY_COMMONS and each admin's choice),
    the posts made since its last training (the newest post its latest version trained on)."""
    guilds = {r.post.guild_id for r in records if r.post.guild_id is not None}
    pooled = pooled_guilds(settings.training.commons, guilds, await storage.commons_choices())
    ends = [float(i.meta["data"]["to"]) for i in store.list() if isinstance(i.meta.get("data"), dict)]
    return commons_batch(records, pooled, max(ends) if ends else None)


async def _waits_for_commons(settings: Settings, storage: Storage, guild: int | None, before: float) -> str | None:
    """Why a server's own lineage does not train yet (served by the commons until KILROY_COMMUNITY_MIN_POSTS settled
    posts of its own), or None."""
    if guild is None or settings.training.commons == "off":
        return None
    settled = (await storage.settled_by_guild(created_before=before)).get(guild, 0)
    need = settings.training.community_min_posts
    if trains_own(settled, need):
        return None
    return f"served by the commons: {settled} settled posts of its own (KILROY_COMMUNITY_MIN_POSTS={need})"
