"""Which adapters are resident in the live model, in least-recently-used order, and which must stay.

Pure bookkeeping (no torch): the Generator asks it what to evict and deletes those adapters from peft itself.
An adapter is never evicted while it is

- the serving one (`Generator.active`),
- pinned under some key (`pin(names, key=...)`: an A/B trial's arms; each community's trial pins under its own key,
  so one trial ending never unpins another's arms),
- in flight (a batch that is loading or generating with it).

Everything else goes least recently used first once more than `capacity` are resident. The bound is soft while a
batch needs more adapters than it allows (they all load, then the cache shrinks back after the batch).
"""

from __future__ import annotations

from collections.abc import Iterable

DEFAULT_PIN = "default"  # the key of `Generator.pin(names)` without one: the single-lineage trial's arms


class ResidentSet:
    """A bounded LRU of adapter names with keyed pins; the least recently used name comes first."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._order: list[str] = []  # least recently used first
        self._pins: dict[str, frozenset[str]] = {}
        self.in_flight: frozenset[str] = frozenset()  # set by the model thread around a batch

    def __contains__(self, name: object) -> bool:
        return name in self._order

    def __len__(self) -> int:
        return len(self._order)

    @property
    def names(self) -> list[str]:
        """Resident names, least recently used first."""
        return list(self._order)

    def add(self, name: str) -> None:
        """A newly loaded adapter: the most recently used."""
        if name in self._order:
            self._order.remove(name)
        self._order.append(name)

    def touch(self, name: str) -> None:
        """`name` was just used: it becomes the most recently used (no-op if not resident)."""
        if name in self._order:
            self._order.remove(name)
            self._order.append(name)

    def remove(self, name: str) -> None:
        if name in self._order:
            self._order.remove(name)

    def pin(self, names: Iterable[str], key: str = DEFAULT_PIN) -> None:
        """Exactly `names` are pinned under `key` (replacing that key's earlier set; empty releases the key)."""
        names = frozenset(names)
        if names:
            self._pins[key] = names
        else:
            self._pins.pop(key, None)

    def pins(self, key: str = DEFAULT_PIN) -> frozenset[str]:
        """The names pinned under `key`."""
        return self._pins.get(key, frozenset())

    @property
    def pinned(self) -> frozenset[str]:
        """Every pinned name, whatever its key."""
        return frozenset().union(*self._pins.values()) if self._pins else frozenset()

    def victims(self, keep: Iterable[str] = ()) -> list[str]:
        """Names to evict, least recently used first, until at most `capacity` remain (fewer evictions if too many
        are kept); also removes them from the set. `keep` adds names that must stay (the serving adapter)."""
        protected = self.pinned | self.in_flight | frozenset(keep)
        out: list[str] = []
        excess = len(self._order) - self.capacity
        for name in list(self._order):
            if excess <= 0:
                break
            if name not in protected:
                self._order.remove(name)
                out.append(name)
                excess -= 1
        return out
