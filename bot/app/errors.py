"""Which domain errors are the user's to fix, and the words to tell them."""

from __future__ import annotations

from bot.adapters.store import AdapterError
from bot.domain.story import StoryTooLong
from bot.engine.generator import AdapterLoadError, GeneratorBusy
from bot.storage.trials import TrialActive
from bot.stories.service import StoryError
from bot.training.runner import TrainingBusy, TrainingFailed
from bot.trials.service import NoTrial

USER_ERRORS: tuple[type[Exception], ...] = (
    AdapterError,
    AdapterLoadError,
    GeneratorBusy,
    StoryError,
    StoryTooLong,
    TrainingBusy,
    TrainingFailed,
    NoTrial,
    TrialActive,
)


def user_message(exc: BaseException) -> str | None:
    """The message to show a member for an expected error, or None for a bug (log it, apologise)."""
    if isinstance(exc, USER_ERRORS):
        return str(exc)
    return None
