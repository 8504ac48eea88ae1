"""The composition root: every entry point's services are built in bot/services.py, typed, and closed cleanly."""

from __future__ import annotations

import socket

import aiohttp
import pytest

from bot.adapters.serving import AdapterService
from bot.adapters.store import AdapterStore
from bot.engine.generator import Generator
from bot.http.health import GatewayState
from bot.privacy.service import PrivacyService
from bot.services import (
    CannotStart,
    ShellServices,
    open_bot_services,
    open_services,
    open_shell_services,
)
from bot.stories.service import StoryService
from bot.training.runner import TrainingRunner
from bot.trials.service import TrialService

pytestmark = pytest.mark.slow  # loads the tiny model

TOKEN = "services-test-token-of-32-characters-or-more"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def get(url: str, **kw) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(url, **kw) as r:
        return r.status, await r.text()


async def test_open_services_builds_every_service_and_closes_cleanly(tiny_settings):
    """One call builds the model thread, database, adapter store and every service over them, sharing one store,
    one storage and one output filter; on exit the generator takes no more work and the database is closed."""
    settings = tiny_settings()
    async with open_services(settings) as s:
        assert isinstance(s.generator, Generator) and isinstance(s.adapter_store, AdapterStore)
        assert isinstance(s.serving, AdapterService) and s.serving.store is s.adapter_store
        assert isinstance(s.training, TrainingRunner) and s.training.store is s.adapter_store
        assert isinstance(s.trials, TrialService) and s.trials.adapters is s.serving
        assert isinstance(s.stories, StoryService) and isinstance(s.privacy, PrivacyService)
        assert s.privacy.adapter_store is s.communities.lineages and s.privacy.storage is s.storage  # every lineage
        assert s.training.storage is s.trials.storage is s.storage
        assert s.serving.active == "base" and s.metrics is None  # no HTTP server outside `kilroy run`
        (sample,) = await s.generator.generate(1, prompt="hello", seed=0)
        assert sample.adapter == "base"
        generator, storage = s.generator, s.storage
    with pytest.raises(RuntimeError):
        await generator.generate(1, prompt="hello", seed=0)  # the model thread is shut down
    with pytest.raises(ValueError):
        await storage.counters()  # the database connection is closed


async def test_trial_announcements_reach_the_bot_once_it_plugs_in(tiny_settings):
    """Before the bot exists an announcement is only logged; after `hooks.plug`, the trial service's announcements
    go to the bot's log-channel writer (wired once, in the composition root)."""
    said: list[str] = []

    async def announce(text: str) -> None:
        said.append(text)

    async with open_services(tiny_settings()) as s:
        await s.trials.announce("before")
        assert said == [] and s.hooks.gateway().connected is False
        s.hooks.plug(gateway=lambda: GatewayState(True, True, 5.0), announce=announce)
        await s.trials.announce("A/B trial #1 started")
        assert said == ["A/B trial #1 started"] and s.hooks.gateway().ready


async def test_bot_services_serve_health_metrics_and_dashboard(tiny_settings):
    """`kilroy run`'s services: the HTTP server answers /healthz from the live services and the bot's gateway,
    /metrics counts generations, the dashboard lists the adapters; on exit the port closes and the run lock goes."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    settings = tiny_settings(KILROY_HTTP_PORT=str(port), KILROY_DASHBOARD_TOKEN=TOKEN)
    async with open_bot_services(settings) as s:
        assert s.metrics is not None
        status, body = await get(f"{base}/healthz")
        assert status == 503 and '"failing": ["gateway"]' in body  # services up, no Discord client yet
        s.hooks.plug(gateway=lambda: GatewayState(True, True, 12.0), announce=lambda text: None)
        status, body = await get(f"{base}/healthz")
        assert status == 200 and "serving base" in body, body
        await s.generator.generate(2, prompt="hello", seed=0)
        status, text = await get(f"{base}/metrics")
        assert status == 200 and "kilroy_generation_seconds_count 1.0" in text and "kilroy_posts_total" in text
        status, page = await get(f"{base}/adapters", headers={"Authorization": f"Bearer {TOKEN}"})
        assert status == 200 and "base" in page
        with pytest.raises(CannotStart, match="another bot already runs"):
            async with open_bot_services(settings):
                pass
    with pytest.raises(aiohttp.ClientConnectionError):
        await get(f"{base}/healthz")
    async with open_bot_services(tiny_settings()) as s:  # the lock was released; no port: no HTTP, no metrics
        assert s.metrics is None


async def test_bot_services_refuse_a_taken_port_with_the_fix(tiny_settings):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(CannotStart, match="KILROY_HTTP_PORT to a free port"):
            async with open_bot_services(tiny_settings(KILROY_HTTP_PORT=str(port))):
                pass
    async with open_bot_services(tiny_settings()):  # the run lock was released on the way out
        pass


async def test_shell_services_train_in_process_without_a_model(make_settings):
    """`kilroy train` and `kilroy adapters trial`: database, store and an in-process runner; with trials on, a
    gate-passing candidate waits for the bot."""
    async with open_shell_services(make_settings(KILROY_AB_SHARE="0.5")) as s:
        assert isinstance(s, ShellServices) and s.training.in_process and s.training.promoter.swap is None
        assert s.training.promoter.defer_to_trial and s.training.store is s.adapter_store
        assert await s.storage.active_trial() is None
    async with open_shell_services(make_settings(KILROY_AB_SHARE="0")) as s:
        assert not s.training.promoter.defer_to_trial
