"""Aggregate versions: the current version of every aggregate, compact for millions of aggregates.

Optimistic concurrency needs, for any aggregate id, the version of its latest event. Holding every
id as a Python string costs about 130 bytes per aggregate (a third of the store's memory at 10
million events), so the versions live in two tiers:

- ``recent``: an exact dict (id -> (version, last sequence)) of aggregates written or looked up
  since the last checkpoint began (and, while one is written, the dict it took: ``folding``);
- ``base``: an id table (stable 63-bit hash of the id -> sequence of its latest event), written to
  and loaded from the index checkpoint. A hit there is only a candidate: the event at that sequence
  is read back and its aggregate id compared, so a hash collision costs a read, never a wrong
  version (on a mismatch the aggregate's events are looked up exactly, newest first).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from lighthouse.id_table import IdTable
from lighthouse.index import id_key
from lighthouse.models import Event

__all__ = ["AggregateVersions"]

#: Reads the event at a sequence (``None`` if there is none).
EventAt = Callable[[int], "Event | None"]
#: Finds the newest event of an aggregate the slow, exact way (``None`` if it has none).
NewestOf = Callable[[str], "Event | None"]


class AggregateVersions:
    """Aggregate id -> current version (0 for an aggregate with no events)."""

    def __init__(self, event_at: EventAt, newest_of: NewestOf, base: IdTable | None = None) -> None:
        self.recent: dict[str, tuple[int, int]] = {}
        #: ``recent`` as a checkpoint in flight took it (read-only), until its folded table is adopted
        self.folding: dict[str, tuple[int, int]] | None = None
        self.base = base if base is not None else IdTable()
        self._event_at = event_at
        self._newest_of = newest_of

    def get(self, aggregate: str, default: int = 0) -> int:
        hit = self.recent.get(aggregate)
        if hit is None and self.folding is not None:
            hit = self.folding.get(aggregate)
        if hit is not None:
            return hit[0]
        found = self._from_base(aggregate)
        if found is None:
            return default
        self.recent[aggregate] = found
        return found[0]

    def set(self, aggregate: str, version: int, last_sequence: int) -> None:
        self.recent[aggregate] = (version, last_sequence)

    def update(self, versions: Mapping[str, tuple[int, int]]) -> None:
        self.recent.update(versions)

    def take_recent(self) -> dict[str, tuple[int, int]]:
        """For a checkpoint: the exact versions not yet in ``base``. ``recent`` is handed over, not copied
        (constant time, unless an earlier hand-over was never adopted: then the two are merged), and a
        fresh one takes the writes from now on. ``adopt`` ends the hand-over."""
        self.folding = self.recent if self.folding is None else {**self.folding, **self.recent}
        self.recent = {}
        return self.folding

    def adopt(self, base: IdTable, folded: dict[str, tuple[int, int]]) -> None:
        """A checkpoint folded ``folded`` (what ``take_recent`` gave it) into ``base``: take that as the base,
        so the strings held are only those of the aggregates written since, not of every one since open."""
        if folded is self.folding:
            self.base, self.folding = base, None

    def nbytes(self) -> int:
        """Bytes of the base table. Not counted: ``recent``, the aggregates written or looked up since the
        last checkpoint (all of them while checkpoints are off or keep failing)."""
        return self.base.nbytes()

    def compact(self) -> None:
        """Fold ``recent`` into ``base`` (the ids' strings are dropped; their versions stay exact)."""
        put = self.base.put
        for aggregate, (_version, last_sequence) in {**(self.folding or {}), **self.recent}.items():
            put(id_key(aggregate), last_sequence)
        self.recent, self.folding = {}, None

    def _from_base(self, aggregate: str) -> tuple[int, int] | None:
        candidates = self.base.candidates(id_key(aggregate))
        if not candidates:
            return None
        for sequence in candidates:
            event = self._event_at(sequence)
            if event is not None and event[2] == aggregate:
                return event[13], sequence
        newest = self._newest_of(aggregate)  # a hash collision: the slow, exact way
        return None if newest is None else (newest[13], newest[11])
