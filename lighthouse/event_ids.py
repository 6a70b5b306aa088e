"""The event-id lookup: id key -> sequences, in layers, so a checkpoint never copies it on the event loop.

- ``base``: every key up to the last checkpoint as two sorted numpy arrays (keys, sequences), searched
  with ``searchsorted``. Loaded from a checkpoint it is a view of the mapped file (nothing is read
  until it is searched), and it is never changed in place.
- ``frozen``: id tables closed by a checkpoint snapshot that is still being written, or closed when
  full (see below); read-only.
- ``live``: the open-addressing ``IdTable`` that takes new ids, with a bit filter kept as they are added
  (which it keeps when frozen), so that a batch's duplicate check probes only the few ids it cannot rule out.
- ``recent``: the newest ids, in a dict (and the runs they came in), until there are ``settle_at`` of them;
  then they go into ``live`` in one vectorised step. Placed as each batch of 100 came, they cost the
  server 0.5-1.1 us per id (a tenth of a batch append's time on the event loop); in runs of thousands,
  ~0.2 us.

A checkpoint snapshot settles the recent ids and freezes ``live`` (a few ms at most, on the loop); the
checkpoint thread merges
``base`` and the frozen tables into new sorted arrays (numpy, off the loop), writes them, and the
loop adopts the merged arrays as the new ``base`` and drops the tables they hold. The live table
only ever holds the ids since the last checkpoint. A small live table grows (its entries re-placed
with numpy); a full one of ``_FREEZE_AT`` ids or more is frozen instead and a bigger one takes over, so
no append waits for a large table to be re-placed (that held the event loop ~140 ms at 650,000 ids);
the next checkpoint merges it like any frozen table.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain

import numpy as np

from lighthouse.id_table import IdTable

__all__ = ["EventIds", "IdsSnapshot"]

#: up to this many keys, ``holds_any`` searches the base one key at a time
_SCALAR_SEARCHES = 8
#: a full live table of this many ids is frozen instead of grown (growing it costs ~8 ms on the loop)
_FREEZE_AT = 1 << 15
#: the recent ids go into the live table when there are this many (at 10,000 events/s: every 0.8 s, ~2 ms)
_SETTLE_AT = 1 << 13
#: what the recent layer holds beyond its dict's own table, per id (the key and sequence objects: 48 and 32
#: bytes of pymalloc for a 63-bit key and a sequence; the key's slot in its run) and per run (the run's pair,
#: its first sequence and the run's own header)
_RECENT_BYTES_PER_ID = 88
_RECENT_BYTES_PER_RUN = 144

@dataclass(slots=True)
class IdsSnapshot:
    """The ids as of a checkpoint snapshot: immutable parts, merged into sorted arrays off the loop."""

    base_keys: np.ndarray
    base_values: np.ndarray
    frozen: list[IdTable]
    merged: tuple[np.ndarray, np.ndarray] | None = field(default=None)

    def sorted_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Every (key, sequence) of the snapshot, sorted by key (computed once; safe off the loop)."""
        if self.merged is None:
            self.merged = _merge(self.base_keys, self.base_values, self.frozen)
        return self.merged

    def __len__(self) -> int:
        return len(self.base_keys) + sum(len(table) for table in self.frozen)


class EventIds:
    """Event id key (a stable 63-bit hash) -> sequences: sorted base + frozen tables + live table + recent ids."""

    __slots__ = ("_keys", "_values", "_frozen", "_live", "_since_snapshot", "_settle_at", "_recent", "_recent_runs",
                 "_recent_count", "_recent_repeats")

    def __init__(self, keys: np.ndarray | None = None, values: np.ndarray | None = None, *,
                 settle_at: int = _SETTLE_AT) -> None:
        """``settle_at``: how many recent ids wait for the live table (1: each add goes there at once)."""
        if settle_at < 1:
            raise ValueError(f"settle_at must be at least 1, got {settle_at}")
        self._keys = keys if keys is not None else np.zeros(0, dtype=np.int64)
        self._values = values if values is not None else np.zeros(0, dtype=np.uint64)
        if len(self._keys) != len(self._values):
            raise ValueError("id keys and sequences differ in length")
        self._frozen: list[IdTable] = []
        self._live = IdTable(filtered=True)
        self._since_snapshot = 0  # ids added since the last snapshot (what the next one's table holds)
        self._settle_at = settle_at
        self._recent: dict[int, int] = {}  # key -> its newest sequence
        self._recent_runs: list[tuple[Sequence[int], int]] = []  # (keys, first sequence), as added: every entry
        self._recent_count = 0
        self._recent_repeats = False  # a key was added twice while recent: the dict holds only its newest

    def __len__(self) -> int:
        return len(self._keys) + sum(len(table) for table in self._frozen) + len(self._live) + self._recent_count

    def add(self, key: int, sequence: int) -> None:
        self.add_run((key,), sequence)

    def add_run(self, keys: Sequence[int], first_sequence: int) -> None:
        """Add ``keys`` at consecutive sequences from ``first_sequence``. ``keys`` is kept, not copied, until
        it settles: the caller must not change it."""
        count = len(keys)
        self._since_snapshot += count
        recent = self._recent
        held = len(recent)
        recent.update(zip(keys, range(first_sequence, first_sequence + count)))
        if len(recent) - held != count:
            self._recent_repeats = True
        self._recent_runs.append((keys, first_sequence))
        self._recent_count += count
        if self._recent_count >= self._settle_at:
            self._settle()

    def _settle(self) -> None:
        """Move the recent ids into the live table (every entry of every run, repeated keys included)."""
        count, runs = self._recent_count, self._recent_runs
        if not count:
            return
        keys = np.fromiter(chain.from_iterable(run for run, _first in runs), dtype=np.int64, count=count)
        lengths = np.fromiter((len(run) for run, _first in runs), dtype=np.int64, count=len(runs))
        firsts = np.fromiter((first for _run, first in runs), dtype=np.int64, count=len(runs))
        starts = np.cumsum(lengths) - lengths  # where each run starts among ``keys``
        values = (np.repeat(firsts - starts, lengths) + np.arange(count)).astype(np.uint64)
        self._make_room(count)
        self._live.add_many(keys, values)
        self._recent, self._recent_runs, self._recent_count, self._recent_repeats = {}, [], 0, False

    def _make_room(self, count: int) -> None:
        """Freeze a large live table that ``count`` more ids would make grow; one twice its size takes over
        (the memory growing would take; a table per doubling to search until the next checkpoint)."""
        live = self._live
        if len(live) < _FREEZE_AT or live.has_room_for(count):
            return
        live.seal()  # full: absent keys probe long; a filter answers most of them (frozen at a snapshot: not full)
        self._frozen.append(live)
        capacity = max(IdTable.capacity_for(count), live.capacity * 2)  # as growing would
        self._live = IdTable(capacity=capacity, filtered=True)

    def candidates(self, key: int) -> list[int]:
        """Sequences whose id hashes to ``key`` (normally zero or one), oldest layer first."""
        found: list[int] = []
        keys = self._keys
        if len(keys):
            lo = int(keys.searchsorted(key, side="left"))
            if lo < len(keys) and int(keys[lo]) == key:
                hi = int(keys.searchsorted(key, side="right"))
                found += self._values[lo:hi].tolist()
        for table in self._frozen:
            found += table.candidates(key)
        found += self._live.candidates(key)
        if key not in self._recent:
            return found
        if not self._recent_repeats:
            return [*found, self._recent[key]]
        return found + [first + at for run, first in self._recent_runs for at, held in enumerate(run) if held == key]

    def holds_any(self, keys_to_find: list[int]) -> bool:
        """True if any of these keys is present (the base answers a whole batch in one vectorised search)."""
        # one array for the tables' filters and the base; none for a single append (numpy's set-up costs more
        # than it saves)
        if self._recent and not self._recent.keys().isdisjoint(keys_to_find):
            return True
        wanted = np.asarray(keys_to_find, dtype=np.int64) if len(keys_to_find) > _SCALAR_SEARCHES else None
        if self._live.holds_any(keys_to_find, wanted):
            return True
        if any(table.holds_any(keys_to_find, wanted) for table in self._frozen):
            return True
        keys = self._keys
        if not len(keys) or not keys_to_find:
            return False
        if wanted is None:
            return any(self._in_base(key) for key in keys_to_find)
        # sorted first: numpy narrows each search by the one before (a group's 1,600 keys in a base of 5
        # million ids: 843 -> 456 us)
        wanted = np.sort(wanted)
        at = keys.searchsorted(wanted)
        np.minimum(at, len(keys) - 1, out=at)
        return bool((keys[at] == wanted).any())

    def _in_base(self, key: int) -> bool:
        at = int(self._keys.searchsorted(key))
        return at < len(self._keys) and int(self._keys[at]) == key

    def snapshot(self, interval: int = 0) -> IdsSnapshot:
        """Freeze the live table: what a checkpoint written now must hold.

        The new live table starts with room for as many ids as were added since the last snapshot, up to
        ``interval`` (the ids expected before the next checkpoint): a steady writer adds as many per
        interval, and the table never has to grow or be frozen. Never more: a full scan's ids, added before
        the first checkpoint after open, must not size every later table."""
        self._settle()
        if len(self._live):
            self._frozen.append(self._live)
            self._live = IdTable(capacity=IdTable.capacity_for(min(self._since_snapshot, interval)), filtered=True)
        self._since_snapshot = 0
        return IdsSnapshot(self._keys, self._values, list(self._frozen))

    def adopt(self, snapshot: IdsSnapshot) -> None:
        """After ``snapshot`` was merged (and written): take its arrays as the base, drop the tables they hold."""
        if snapshot.merged is None or snapshot.base_keys is not self._keys:
            return  # not merged, or another snapshot was adopted meanwhile
        count = len(snapshot.frozen)
        if len(self._frozen) < count or any(mine is not theirs for mine, theirs in zip(self._frozen, snapshot.frozen)):
            return
        self._keys, self._values = snapshot.merged
        del self._frozen[:count]

    def sorted_base(self) -> tuple[np.ndarray, np.ndarray]:
        return self._keys, self._values

    def release(self) -> None:
        """Drop every array (views of a mapped checkpoint included), so the mapping can be closed."""
        self._keys, self._values = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint64)
        self._frozen, self._live, self._since_snapshot = [], IdTable(filtered=True), 0
        self._recent, self._recent_runs, self._recent_count, self._recent_repeats = {}, [], 0, False

    def nbytes(self) -> int:
        runs = self._recent_runs
        recent = (sys.getsizeof(self._recent) + sys.getsizeof(runs) + self._recent_count * _RECENT_BYTES_PER_ID
                  + len(runs) * _RECENT_BYTES_PER_RUN)
        tables = sum(table.nbytes() for table in [*self._frozen, self._live])
        return int(self._keys.nbytes + self._values.nbytes) + tables + recent


def _merge(keys: np.ndarray, values: np.ndarray, tables: list[IdTable]) -> tuple[np.ndarray, np.ndarray]:
    """Sorted ``keys``/``values`` with every entry of ``tables`` inserted in key order: the tables' few
    entries are sorted, then placed with one vectorised search and one copy of the base."""
    parts = [table.entries() for table in tables]
    if not parts:
        return keys, values
    new_keys = np.concatenate([k for k, _v in parts])
    new_values = np.concatenate([v for _k, v in parts])
    order = np.argsort(new_keys, kind="stable")
    new_keys, new_values = new_keys[order], new_values[order]
    if not len(keys):
        return new_keys, new_values
    at = keys.searchsorted(new_keys, side="right")
    return np.insert(keys, at, new_keys), np.insert(values, at, new_values)
