"""Driving both stores with generated multi-agent traffic, and judging what they did with it.

The load suite talks to stores only through the kit's adapter protocol (append, append_batch, query, read_all),
so it runs unchanged against any store with an adapter. Every write goes through a ``History`` and every run
ends with the kit's durability checker over a full read: "no loss" is checked, not assumed.
"""

from __future__ import annotations

import itertools
import math
from array import array
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from time import monotonic_ns
from typing import Any

from testkit.adapters import AdapterSpec, EventStoreAdapter, available_adapters
from testkit.checkers import History, Verdict, check_durability

__all__ = [
    "JUDGED",
    "AckLedger",
    "LatencyWindows",
    "PairRecorder",
    "agent_event_stream",
    "check_no_loss",
    "median",
    "open_adapters",
    "reported_index_bytes",
    "session_events",
]

JUDGED = "lighthouse"  # the store the ADR lines judge; every other adapter is a peer, measured and reported


def median(values: list[float]) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.inf
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


@asynccontextmanager
async def open_adapters(root: Path, specs: list[AdapterSpec] | None = None) -> AsyncIterator[dict[str, Any]]:
    """Every available store (lighthouse first, then SQLite), open, each in ``root/<name>``."""
    adapters: dict[str, EventStoreAdapter] = {}
    try:
        for spec in specs or available_adapters():
            adapter = spec.create(root / spec.name)
            await adapter.open()
            adapters[spec.name] = adapter
        yield adapters
    finally:
        for adapter in reversed(list(adapters.values())):
            await adapter.close()


def agent_event_stream(generator: Any, *, start: int = 0) -> Iterator[dict[str, Any]]:
    """The generator's interleaved session traffic, from event ``start`` on (a fresh, repeatable iterator)."""
    return itertools.islice(generator.events(), start, None)


def session_events(generator: Any) -> Iterator[dict[str, Any]]:
    """Events session by session, in constant memory: for soaks. (``events()``, the interleaved stream, keeps
    every finished session in the generator, so its memory grows with the run.)"""
    for session in generator.sessions():
        yield from session.events


def reported_index_bytes(adapter: Any) -> int:
    """The in-memory index size the store itself reports (lighthouse's ``stats().index_bytes``), else 0.

    An index grows in steps (a hash table doubles), so over a short soak its growth looks like a leak unless it
    is taken out; a store that reports nothing is judged on all of its growth."""
    store = getattr(adapter, "store", None)
    stats = getattr(store, "stats", None)
    if stats is None:
        return 0
    return int(getattr(stats(), "index_bytes", 0))


class AckLedger:
    """What a soak needs to prove no loss, in 16 bytes per acknowledged event: its sequence and id hash."""

    BYTES_PER_ENTRY = 16

    def __init__(self) -> None:
        self._sequences = array("q")
        self._ids = array("q")

    def __len__(self) -> int:
        return len(self._sequences)

    def add(self, stored: Any) -> None:
        self._sequences.append(stored.sequence)
        self._ids.append(hash(stored.event_id))

    def add_all(self, stored: Any) -> None:
        events = stored if isinstance(stored, list) else list(stored)
        self._sequences.extend(event.sequence for event in events)
        self._ids.extend(hash(event.event_id) for event in events)

    async def missing_from(self, adapter: EventStoreAdapter) -> list[int]:
        """Sequences acknowledged but absent (or holding another event) in a full read of the store."""
        found: dict[int, int] = {}
        async for event in adapter.read_all():
            found[event.sequence] = hash(event.event_id)
        return [seq for seq, ident in zip(self._sequences, self._ids) if found.get(seq) != ident]


async def check_no_loss(adapter: EventStoreAdapter, history: History) -> Verdict:
    """Read everything back and judge it against the history: every acknowledged write present, once, in
    order, nothing nobody wrote, no holes."""
    recovered = [event async for event in adapter.read_all()]
    return check_durability(history, recovered)


@dataclass
class LatencyWindows:
    """Latencies bucketed by completion time into windows of ``width_s`` (finer than the runner's seconds), so
    a burst's recovery can be timed to a fraction of a second. Keeps 4 bytes per operation."""

    width_s: float
    origin_ns: int

    def __post_init__(self) -> None:
        if not self.width_s > 0:
            raise ValueError(f"width_s must be > 0, got {self.width_s}")
        self._windows: dict[int, array[float]] = {}

    def add(self, started_ns: int, ended_ns: int) -> None:
        index = int((ended_ns - self.origin_ns) / 1e9 // self.width_s)
        bucket = self._windows.get(index)
        if bucket is None:
            bucket = self._windows[index] = array("f")
        bucket.append((ended_ns - started_ns) / 1e6)

    def timed(self, operation: Any) -> Any:
        """Wrap an async ``operation()`` so each call's latency lands in its window."""

        async def wrapped() -> None:
            started = monotonic_ns()
            await operation()
            self.add(started, monotonic_ns())

        return wrapped

    def percentile(self, start_s: float, end_s: float, q: float) -> float:
        """The ``q`` percentile (ms) of everything that completed in ``[start_s, end_s)``."""
        values = sorted(v for i, bucket in self._windows.items()
                        if start_s <= i * self.width_s < end_s for v in bucket)
        if not values:
            return math.nan
        return values[min(len(values) - 1, math.ceil(q / 100 * len(values)) - 1)]

    def series(self, q: float) -> list[tuple[float, float, int]]:
        """``(window start s, q percentile ms, count)`` for every window with completions, in time order."""
        out = []
        for index in sorted(self._windows):
            values = sorted(self._windows[index])
            out.append((index * self.width_s, values[min(len(values) - 1, math.ceil(q / 100 * len(values)) - 1)],
                        len(values)))
        return out


class PairRecorder:
    """Records a figure for every store plus the judged store's ratio to each peer (``name.ratio[peer]``)."""

    def __init__(self, record: Any) -> None:
        self._record = record

    def add(self, name: str, unit: str, values: Mapping[str, float], *, direction: str = "lower",
            target: tuple[str, float] | None = None, samples: Mapping[str, list[float]] | None = None) -> None:
        for store, value in values.items():
            if not math.isfinite(value):
                continue
            self._record.metric(f"{name}[{store}]", value, unit, direction, target if store == JUDGED else None,
                                samples=(samples or {}).get(store))
        judged = values.get(JUDGED)
        for store, value in values.items():
            if store != JUDGED and judged is not None and value and math.isfinite(value) and math.isfinite(judged):
                self._record.metric(f"{name}.ratio[{JUDGED}/{store}]", judged / value, "x", direction)
