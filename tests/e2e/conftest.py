"""Fixtures that run the real Kilroy bot (real discord.py client, tiny model) against the fake Discord server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route

from tests.support import fake_discord as fd
from tests.support.data import OPEN_GATE


@pytest.fixture
async def server() -> AsyncIterator[fd.FakeDiscord]:
    s = fd.FakeDiscord()
    await s.start()
    old = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    Route.BASE = s.base_url
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(s.gateway_url)
    try:
        yield s
    finally:
        Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = old
        await s.stop()


E2E_ENV = {
    "KILROY_GUILD_IDS": str(fd.GUILD_ID),
    "KILROY_MODERATOR_ROLE_IDS": str(fd.MODERATOR_ROLE),
    "KILROY_OPERATOR_USER_IDS": str(fd.OPERATOR_ID),
    "KILROY_SETTLE_HOURS": "0",
    "KILROY_MIN_TRAIN_POSTS": "2",
    "KILROY_EPOCHS": "1",
    **OPEN_GATE,
    "KILROY_REWARD_MAX_P": "1",
    "KILROY_STORY_COOLDOWN_SECONDS": "0",
    "KILROY_AB_SHARE": "0",  # gate-only promotion, except in tests/e2e/test_trial.py
}


@pytest.fixture
def e2e_settings(tiny_settings, monkeypatch):
    """Settings for the bot under test; also exported so the training worker process sees the same."""

    def make(**extra: str):
        env = {**E2E_ENV, **extra}
        settings = tiny_settings(**env)
        for k, v in {
            **env,
            "KILROY_MODEL": settings.model.name,
            "KILROY_GATE_SAMPLES": "8",
            "KILROY_MAX_NEW_TOKENS": "24",
        }.items():
            monkeypatch.setenv(k, v)
        return settings

    return make
