"""Composing a scheduled post: sample a batch of candidates, pass every text through the output filter, send the one
the reward model scores highest (best-of-N), resample a bounded number of times, then skip.

`compose_post` writes one post. `compose_posts` writes several at once (posts for several communities that fall due
together, an A/B trial's arms beside them): each `PostRequest` names its adapter reference, its channel, its prompt,
its community's reward model (`scorer`) and its N; every request's N candidates are drawn in ONE mixed-adapter batch
(`Generator.generate_mixed`), and each request is then picked on its own with `pick` (its filter, its scorer, its
exploration). Only the requests whose whole group was refused are drawn again, again together; a request whose
adapter cannot load gets None and the others go on.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bot.domain.records import BASE
from bot.domain.safety import OutputFilter

if TYPE_CHECKING:
    from bot.engine.generator import Generator, Sample

log = logging.getLogger(__name__)

# predicted scores of a batch of texts (the reward model's `predict`, in score units); the engine knows no more of it
Scorer = Callable[[Sequence[str]], Sequence[float]]

RECENT_POSTS = 64  # how many of a channel's latest posts the novelty term compares a candidate with
_WORD = re.compile(r"[\w']+")


def word_bigrams(text: str) -> frozenset[tuple[str, str]]:
    """A text's word bigrams, lowercased, punctuation ignored."""
    return frozenset(itertools.pairwise(_WORD.findall(text.lower())))


def familiarity(text: str, seen: frozenset[tuple[str, str]] | set[tuple[str, str]]) -> float:
    """The share of a text's word bigrams already in `seen` (the recent posts' bigrams): 0 all new, 1 all seen."""
    grams = word_bigrams(text)
    return len(grams & seen) / len(grams) if grams else 0.0


@dataclass(frozen=True)
class Candidate:
    """One of the N samples drawn for a post: its ids, the reward model's prediction, whether it could be sent."""

    text: str
    completion_ids: tuple[int, ...]
    predicted: float | None  # None without a reward model
    postable: bool


@dataclass(frozen=True)
class Choice:
    """The sample to send (its text neutralised by the filter) and every candidate it was picked from."""

    sample: Sample
    candidates: tuple[Candidate, ...]
    chosen: int  # index into candidates
    explored: bool = False  # picked at random among the postable ones, not by the reward model


def pick(
    samples: Sequence[Sample],
    output_filter: OutputFilter,
    *,
    scorer: Scorer | None = None,
    explore: float = 0.0,
    rng: random.Random | None = None,
    recent: Sequence[str] = (),
    novelty: float = 0.0,
) -> Choice | None:
    """Best-of-N over one batch: the postable sample with the highest predicted score, or None if none is postable.

    Without a scorer it is the first postable sample (every sample is then a plain draw of the policy). With
    probability `explore` the pick is uniform among the postable ones instead: a reranker that only exploits its
    reward model never shows the audience what the model does not yet know.

    Novelty: a reward model ranks the posts it likes the same way every time, so its picks converge on the same
    words and phrases, post after post (what members tire of, and what distinct-2 measures). With `novelty` > 0 each
    candidate's prediction loses `novelty` x its familiarity (the share of its word bigrams already in the `recent`
    posts) x the batch's mean |prediction|: at 1, a candidate made only of phrases the channel just saw counts as
    nothing. The recorded predictions stay the reward model's own.
    """
    if scorer is None or len(samples) < 2:
        # a plain draw: the first postable sample (the ones after it are never checked, nor counted as refused)
        for s in samples:
            verdict = output_filter.check_generated(s.text)
            if verdict.ok:
                candidates = (Candidate(s.text, tuple(s.completion_ids), None, True),)
                return Choice(dataclasses.replace(s, text=verdict.text), candidates, 0)
        return None
    verdicts = [output_filter.check_generated(s.text) for s in samples]
    ok = [i for i, v in enumerate(verdicts) if v.ok]
    if not ok:
        return None
    predicted = [float(p) for p in scorer([s.text for s in samples])]
    explored = False
    if explore > 0 and (rng or random).random() < explore:
        chosen, explored = (rng or random).choice(ok), True
    else:
        ranked = predicted
        if novelty > 0 and recent:
            seen = frozenset().union(*(word_bigrams(t) for t in recent))
            scale = sum(abs(predicted[i]) for i in ok) / len(ok)
            ranked = [p - novelty * scale * familiarity(s.text, seen) for p, s in zip(predicted, samples, strict=True)]
        chosen = max(ok, key=lambda i: (ranked[i], -i))  # ties: the earliest draw
    candidates = tuple(
        Candidate(s.text, tuple(s.completion_ids), p, v.ok)
        for s, p, v in zip(samples, predicted, verdicts, strict=True)
    )
    sample = dataclasses.replace(samples[chosen], text=verdicts[chosen].text)
    return Choice(sample, candidates, chosen, explored)


def draws(best_of: int, scorer: Scorer | None) -> tuple[int, Scorer | None]:
    """How many samples a post draws, and the scorer its pick uses: N with a reward model and best-of-N on, else
    two and no scorer (a plain draw of the policy; without a reward model N draws would choose nothing)."""
    if best_of <= 1 or scorer is None:
        return 2, None
    return max(2, best_of), scorer


async def compose_post(
    generator: Generator,
    *,
    prompt: str,
    output_filter: OutputFilter,
    tries: int = 3,
    adapter: str | None = None,
    best_of: int = 1,
    scorer: Scorer | None = None,
    explore: float = 0.0,
    recent: Sequence[str] = (),
    novelty: float = 0.0,
) -> Choice | None:
    """A choice among `best_of` samples drawn in one batch (written by `adapter`, default the serving one) that
    passed the filter, or None after `tries` batches without one. With `best_of` 1 (or no scorer) it is the first
    postable sample of a batch of two, as before best-of-N. `recent` and `novelty`: see `pick`."""
    n, scorer = draws(best_of, scorer)
    for attempt in range(tries):
        choice = pick(
            await generator.generate(n, prompt=prompt, adapter=adapter),
            output_filter,
            scorer=scorer,
            explore=explore,
            recent=recent,
            novelty=novelty,
        )
        if choice is not None:
            return choice
        log.info("no postable sample (attempt %d of %d)", attempt + 1, tries)
    output_filter.gave_up()
    log.warning("skipped a post: the output filter refused %d batches of samples", tries)
    return None


@dataclass(frozen=True)
class PostRequest:
    """One post to write as a part of a mixed batch.

    `adapter`: the serving reference that writes it ("g123/v0004", "commons/v0002", "base"; an A/B arm is just
    another reference). `channel_id`: where it goes (logged; the caller sends). `scorer`: that community's reward
    model (None: a plain draw). `output_filter`: None uses compose_posts' own. `path`: where to load the adapter
    from when it is not resident (None: the generator's resolver).
    """

    adapter: str = BASE
    channel_id: int | None = None
    prompt: str = ""
    prompt_ids: tuple[int, ...] | None = None
    scorer: Scorer | None = None
    best_of: int = 1
    explore: float = 0.0
    output_filter: OutputFilter | None = None
    path: Path | None = None
    recent: tuple[str, ...] = ()  # the channel's latest posts, for the novelty term (see `pick`)
    novelty: float = 0.0


async def compose_posts(
    generator: Generator,
    requests: Sequence[PostRequest],
    *,
    output_filter: OutputFilter,
    tries: int = 3,
    rng: random.Random | None = None,
) -> list[Choice | None]:
    """One choice per request (None: refused `tries` batches running, or its adapter could not load), in order.

    Every pending request's candidates go into one mixed batch per try; a request is picked exactly as
    compose_post picks (same draws, same `pick`), on its own rows only. Raises GeneratorBusy like `generate`.
    """
    from bot.engine.generator import AdapterLoadError, Request

    results: list[Choice | None] = [None] * len(requests)
    plans = [draws(r.best_of, r.scorer) for r in requests]
    pending = list(range(len(requests)))
    attempt = 0
    while pending and attempt < tries:
        batch = [
            Request(
                adapter=requests[i].adapter,
                prompt=requests[i].prompt,
                n=plans[i][0],
                prompt_ids=requests[i].prompt_ids,
                path=requests[i].path,
            )
            for i in pending
        ]
        try:
            groups = await generator.generate_mixed(batch)
        except AdapterLoadError as exc:
            if exc.adapter is None:
                raise
            # that adapter's posts are skipped this round; the others are drawn without them (not a try spent)
            log.error("skipping posts by adapter %s: %s", exc.adapter, exc)
            pending = [i for i in pending if requests[i].adapter != exc.adapter]
            continue
        attempt += 1
        still = []
        for i, group in zip(pending, groups, strict=True):
            r = requests[i]
            choice = pick(
                group,
                r.output_filter or output_filter,
                scorer=plans[i][1],
                explore=r.explore,
                rng=rng,
                recent=r.recent,
                novelty=r.novelty,
            )
            if choice is None:
                log.info("no postable sample for channel %s (attempt %d of %d)", r.channel_id, attempt, tries)
                still.append(i)
            results[i] = choice
        pending = still
    for i in pending:
        (requests[i].output_filter or output_filter).gave_up()
        channel = requests[i].channel_id
        log.warning("skipped a post in channel %s: the output filter refused %d batches of samples", channel, tries)
    return results
