"""Data fixtures: posts sampled from the tiny model with votes, and the gate that lets any candidate through."""

from __future__ import annotations

import random

from bot.storage import NewPost

DAY = 86400.0


OPEN_GATE = {
    "KILROY_GATE_MAX_KL": "100",
    "KILROY_GATE_MIN_DIVERSITY": "0",
    "KILROY_GATE_MIN_BASE_DIVERSITY": "0",
    "KILROY_GATE_MAX_REPEAT": "100",
    "KILROY_GATE_MAX_LENGTH": "100",
    "KILROY_GATE_MIN_ENGAGEMENT": "-100",
}


async def seed_posts(settings, storage, n=16, at=0.0):
    """Sample real posts from the tiny model and give the ones mentioning cats many votes."""
    from bot.engine.generator import Generator, SamplingParams
    from bot.engine.model import load_base

    g = Generator(load_base(settings.model, settings.data_dir, device="cpu"), SamplingParams(max_new_tokens=24))
    try:
        samples = await g.generate(n, seed=1)
    finally:
        await g.close()
    rng = random.Random(0)
    for i, s in enumerate(samples):
        mid = int(at) + i + 1
        await storage.add_post(
            NewPost(
                channel_id=1,
                text=s.text,
                adapter=s.adapter,
                created_at=at + i,
                message_id=mid,
                prompt_ids=s.prompt_ids,
                completion_ids=s.completion_ids,
            )
        )
        for member in range(rng.randint(0, 2) + (6 if "cat" in s.text else 0)):
            await storage.add_vote(mid, 100 + member, "❤️", at=at + i)
    return samples
