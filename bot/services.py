"""The services the bot runs on, built once in the composition root and handed to the cogs."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bot.config import Settings
from bot.engine.generator import Generator
from bot.serving import AdapterService
from bot.storage import Storage
from bot.story_session import StoryService
from bot.training.runner import TrainingRunner
from bot.trial_service import TrialService


@dataclass
class Services:
    settings: Settings
    storage: Storage
    generator: Generator
    adapters: AdapterService
    training: TrainingRunner
    stories: StoryService
    trials: TrialService
    clock: Callable[[], float] = field(default=time.time)
