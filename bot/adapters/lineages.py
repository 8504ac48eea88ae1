"""Lineages: one adapter store per community, and which lineage serves a community.

Layout (bot/domain/community.py names the communities):
    adapters/<community>/v0004/...             a version (PEFT files + meta.json), as in `AdapterStore`
    adapters/<community>/STATE.json            that lineage's pointer and rollback history
    adapters/<community>/reward_model.json     that community's reward model (fit on its own settled posts)
    adapters/.training.lock                    one training at a time, across every lineage and process
    adapters/LINEAGES.json                     the flat-folder migration's marker (bot/adapters/migrate.py)

API:
    lineages = Lineages(root)                    the registry (cheap; stores are created on first use)
    lineages.store("g123") -> AdapterStore        versions and pointer of one lineage, names bare ("v0004")
    lineages.communities() -> ["commons", "g123"] lineages on disk
    lineages.current("g123") -> "g123/v0004"      that lineage's own pointer as a reference ("base" when none)
    lineages.path("g123/v0004") -> Path           a validated version folder, by reference
    lineages.serving("g123") -> "commons/v0002"   what serves the community, decided by `lineages.policy`
    lineages.reward_model_path("g123") -> Path

The serving policy is one function, `Policy = (community, Lineages) -> reference`; `default_policy` serves a
community's own pointer if it has one, else the commons pointer, else the base model. So a new server is served by
the commons from its first post and switches to its own adapter when its own gate passes (promotion moves its own
pointer). KILROY_COMMONS and KILROY_COMMUNITY_MIN_POSTS (a later issue-24 step) slot in as another policy.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

from bot.adapters.store import AdapterStore
from bot.domain.community import COMMONS, is_community, parse_ref, ref, validate_community
from bot.domain.records import BASE

log = logging.getLogger(__name__)

Policy = Callable[[str, "Lineages"], str]
"""Which adapter serves a community: (community, lineages) -> a reference ("g123/v0004", "commons/v0002", "base")."""

REWARD_MODEL = "reward_model.json"


def default_policy(community: str, lineages: Lineages) -> str:
    """The community's own pointer, else the commons', else the base model."""
    own = lineages.current(community)
    if own != BASE or community == COMMONS:
        return own
    return lineages.current(COMMONS)


class Lineages:
    """The registry of lineages under one adapters folder (KILROY_ADAPTERS_DIR)."""

    def __init__(self, root: Path, *, policy: Policy = default_policy) -> None:
        self.root = Path(root)
        if not self.root.exists():
            self.root.mkdir(parents=True, mode=0o700)
        self.policy = policy
        self._stores: dict[str, AdapterStore] = {}
        self._lock = threading.Lock()  # stores are created from the loop and from worker threads

    def store(self, community: str) -> AdapterStore:
        """The adapter store of one community's lineage (created empty on first use)."""
        validate_community(community)
        with self._lock:
            found = self._stores.get(community)
            if found is None:
                found = self._stores[community] = AdapterStore(self.root / community)
            return found

    def communities(self) -> list[str]:
        """The lineages on disk, sorted (the commons first)."""
        found = [p.name for p in self.root.iterdir() if p.is_dir() and is_community(p.name)]
        return sorted(found, key=lambda c: (c != COMMONS, c))

    def current(self, community: str) -> str:
        """The community's own pointer as a reference; "base" when its lineage serves nothing of its own."""
        if not (self.root / validate_community(community)).is_dir():
            return BASE
        return ref(community, self.store(community).current())

    def serving(self, community: str) -> str:
        """The reference that serves `community` now, by the policy."""
        return self.policy(validate_community(community), self)

    def path(self, reference: str) -> Path:
        """The folder of the version a reference names (validated like `AdapterStore.path`)."""
        community, version = parse_ref(reference)
        if community is None:
            return self.store(COMMONS).path(version)  # raises: base has no folder
        return self.store(community).path(version)

    def exists(self, reference: str) -> bool:
        """True for "base" and for a version folder with weights."""
        community, version = parse_ref(reference)
        return community is None or self.store(community).exists(version)

    def reward_model_path(self, community: str) -> Path:
        """Where a community's reward model lives (its lineage folder)."""
        return self.root / validate_community(community) / REWARD_MODEL

    def scrub(self, text: str, replacement: str) -> int:
        """`AdapterStore.scrub` over every lineage (a forgotten member leaves every server's metadata)."""
        return sum(self.store(c).scrub(text, replacement) for c in self.communities())

    def remove_temp_dirs(self) -> int:
        """`AdapterStore.remove_temp_dirs` over every lineage (and the top folder's, from before lineages); call
        under the training lock."""
        top = [p for p in self.root.glob(".tmp-*") if p.is_dir()]
        for p in top:
            shutil.rmtree(p, ignore_errors=True)
        return len(top) + sum(self.store(c).remove_temp_dirs() for c in self.communities())
