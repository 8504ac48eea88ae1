"""All persistence: SQLite (aiosqlite, WAL) or PostgreSQL (asyncpg), numbered migrations per dialect, and every SQL
statement of the project.

One module per aggregate (posts and engagement, live votes, training runs, stories, privacy and audit), sharing one
connection (`_conn.py`: either backend, one SQL text with the differences named) and one transaction helper
(`_db.py`); `Storage` composes them, so callers see one object. `Storage.open(path)` opens a SQLite file,
`Storage.open("postgresql://...")` a PostgreSQL database. Writes are
idempotent through natural keys, so a replayed gateway event or a catch-up pass can run freely. Rows come back as small
frozen dataclasses (`records.py`); nothing above this package depends on the driver.
"""

from __future__ import annotations

from bot.domain.records import NewPost, Post, PostRecord, Reply, Story, StoryLine, TrainingRun, Trial, Vote
from bot.storage._db import StorageBase, migrations
from bot.storage.commons import CommonsMixin
from bot.storage.communities import CommunitiesMixin
from bot.storage.ops import Counters, OpsMixin, ScoredPost
from bot.storage.posts import PostCandidate, PostsMixin
from bot.storage.privacy import PrivacyMixin
from bot.storage.runs import RunsMixin
from bot.storage.stats import StatsMixin
from bot.storage.stories import StoriesMixin, StoryEnded, StoryExists
from bot.storage.trials import TrialActive, TrialsMixin
from bot.storage.votes import VotesMixin

__all__ = [
    "Counters",
    "NewPost",
    "Post",
    "PostCandidate",
    "PostRecord",
    "Reply",
    "ScoredPost",
    "Storage",
    "Story",
    "StoryEnded",
    "StoryExists",
    "StoryLine",
    "TrainingRun",
    "Trial",
    "TrialActive",
    "Vote",
    "migrations",
]


class Storage(
    PrivacyMixin,
    StatsMixin,
    StoriesMixin,
    PostsMixin,
    VotesMixin,
    RunsMixin,
    TrialsMixin,
    OpsMixin,
    CommunitiesMixin,
    CommonsMixin,
    StorageBase,
):
    """The database. Open with `async with Storage.open(settings.database) as storage:` (a path or a URL)."""
