"""The two stores every perf figure is measured on, behind one small interface of native operations.

The adapter protocol (``testkit.adapters``) covers appends, a full read and simple queries; ADR-004 also asks
about get-by-id, time ranges, multi-field filters, streaming replay and live delivery. Each peer does those the
way that store does them best, so a ratio compares stores rather than glue code:

* lighthouse through its ``EventStore`` API (reads are served from its in-memory index and checksummed frames);
* SQLite (WAL, ``synchronous=FULL``) through SQL on a reader connection of its own (WAL readers never block the
  writer), with the index its time-range query needs and fresh planner statistics. SQLite has no push
  notifications, so its subscription polls every ``POLL_INTERVAL_S``, as an application on SQLite would.

Appends go through the kit's adapters for both, so both pay the same dict-to-record conversion.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

import msgpack

from lighthouse import EventFilter, EventStore
from testkit.adapters import SqliteAdapter
from testkit.adapters.lighthouse import LighthouseAdapter

from .workload import FilterSpec

__all__ = ["PEER_NAMES", "POLL_INTERVAL_S", "LighthousePeer", "Peer", "SqlitePeer", "make_peer", "open_peers"]

PEER_NAMES: tuple[str, ...] = ("lighthouse", "sqlite")
POLL_INTERVAL_S = 0.005
_SQLITE_FILE = "events.db"  # where SqliteAdapter keeps its database inside its data directory
_COLUMNS = "seq, event_id, event_type, aggregate_id, source_agent, correlation_id, causation_id, recorded_at, data"
_READ_INDEXES = "CREATE INDEX IF NOT EXISTS perf_events_by_time ON events(recorded_at);"
_PAGE = 5_000


class Peer(Protocol):
    """Native operations of one store; every method returns enough for a test to check the answer."""

    name: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def append(self, event: Mapping[str, Any]) -> int:
        """Append durably; return the assigned sequence."""
        ...

    async def append_batch(self, events: Sequence[Mapping[str, Any]]) -> int:
        """Append atomically and durably; return the last assigned sequence."""
        ...

    async def prepare_reads(self) -> None:
        """Whatever a competent operator does after a bulk load (SQLite: ANALYZE)."""
        ...

    async def get(self, event_id: str) -> str:
        """Read one event by id; return its id as stored."""
        ...

    async def recorded_at(self, sequence: int) -> float: ...

    async def time_range(self, after: float, before: float, limit: int) -> int:
        """Events recorded in ``[after, before)``, decoded, in sequence order; return how many."""
        ...

    async def matching(self, spec: FilterSpec) -> int:
        """Events matching ``spec``, decoded, in sequence order; return how many."""
        ...

    def replay(self) -> AsyncIterator[int]:
        """Every stored event, decoded, in order; yields sequences."""
        ...

    def follow(self) -> AsyncIterator[str]:
        """Events appended from now on, as they become visible; yields event ids."""
        ...

    def stats(self) -> dict[str, float]: ...


class LighthousePeer:
    """lighthouse in process; ``store_factory`` lets a test swap in a test-only subclass of ``EventStore``."""

    name = "lighthouse"

    def __init__(self, data_dir: Path, *, store_factory: Callable[..., EventStore] = EventStore,
                 **options: Any) -> None:
        self.adapter = LighthouseAdapter(data_dir, store_factory=store_factory, **options)

    @property
    def store(self) -> EventStore:
        if self.adapter.store is None:
            raise RuntimeError("the peer is not open")
        return self.adapter.store

    async def open(self) -> None:
        await self.adapter.open()

    async def close(self) -> None:
        await self.adapter.close()

    async def append(self, event: Mapping[str, Any]) -> int:
        return (await self.adapter.append(event)).sequence

    async def append_batch(self, events: Sequence[Mapping[str, Any]]) -> int:
        return (await self.adapter.append_batch(events))[-1].sequence

    async def prepare_reads(self) -> None:
        return None

    async def get(self, event_id: str) -> str:
        return (await self.store.get(event_id)).event_id

    async def recorded_at(self, sequence: int) -> float:
        recorded = (await self.store.get(sequence)).recorded_at
        assert recorded is not None
        return float(recorded)

    async def time_range(self, after: float, before: float, limit: int) -> int:
        result = await self.store.query(EventFilter(recorded_after=after, recorded_before=before), limit=limit)
        return len(result.events)

    async def matching(self, spec: FilterSpec) -> int:
        flt = EventFilter(event_types=spec.event_types, source_agents=spec.source_agents,
                          from_sequence=spec.first_sequence, to_sequence=spec.last_sequence)
        result = await self.store.query(flt, limit=spec.last_sequence - spec.first_sequence + 1)
        return len(result.events)

    async def replay(self) -> AsyncIterator[int]:
        async for event in self.store.replay():
            yield event.sequence

    async def follow(self) -> AsyncIterator[str]:
        subscription = self.store.subscribe()
        try:
            async for event in subscription:
                yield event.event_id
        finally:
            await subscription.aclose()

    def stats(self) -> dict[str, float]:
        stats = self.store.stats()
        return {"events": stats.events, "index_bytes": stats.index_bytes, "bytes_on_disk": stats.bytes_on_disk}


class SqlitePeer:
    """SQLite through ``SqliteAdapter`` for writes and a reader connection of its own for reads."""

    name = "sqlite"

    def __init__(self, data_dir: Path, *, synchronous: str = "FULL") -> None:
        self.adapter = SqliteAdapter(data_dir, synchronous=synchronous)
        self.path = Path(data_dir) / _SQLITE_FILE
        self._reader: sqlite3.Connection | None = None

    @property
    def reader(self) -> sqlite3.Connection:
        if self._reader is None:
            raise RuntimeError("the peer is not open")
        return self._reader

    async def open(self) -> None:
        await self.adapter.open()
        reader = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        reader.executescript(_READ_INDEXES)
        self._reader = reader

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        await self.adapter.close()

    async def append(self, event: Mapping[str, Any]) -> int:
        return (await self.adapter.append(event)).sequence

    async def append_batch(self, events: Sequence[Mapping[str, Any]]) -> int:
        return (await self.adapter.append_batch(events))[-1].sequence

    async def prepare_reads(self) -> None:
        self.reader.execute("ANALYZE")

    async def get(self, event_id: str) -> str:
        row = self.reader.execute(f"SELECT {_COLUMNS} FROM events WHERE event_id = ?", (event_id,)).fetchone()
        if row is None:
            raise KeyError(event_id)
        _decode(row)
        return str(row[1])

    async def recorded_at(self, sequence: int) -> float:
        row = self.reader.execute("SELECT recorded_at FROM events WHERE seq = ?", (sequence,)).fetchone()
        if row is None:
            raise KeyError(sequence)
        return float(row[0])

    async def time_range(self, after: float, before: float, limit: int) -> int:
        rows = self.reader.execute(
            f"SELECT {_COLUMNS} FROM events WHERE recorded_at >= ? AND recorded_at < ? ORDER BY seq LIMIT ?",
            (after, before, limit)).fetchall()
        return len([_decode(row) for row in rows])

    async def matching(self, spec: FilterSpec) -> int:
        types, agents = sorted(spec.event_types), sorted(spec.source_agents)
        sql = (f"SELECT {_COLUMNS} FROM events WHERE seq BETWEEN ? AND ?"
               f" AND event_type IN ({','.join('?' * len(types))}) AND source_agent IN ({','.join('?' * len(agents))})"
               " ORDER BY seq LIMIT ?")
        limit = spec.last_sequence - spec.first_sequence + 1
        rows = self.reader.execute(sql, (spec.first_sequence, spec.last_sequence, *types, *agents, limit)).fetchall()
        return len([_decode(row) for row in rows])

    async def replay(self) -> AsyncIterator[int]:
        last = 0
        while True:
            rows = self.reader.execute(f"SELECT {_COLUMNS} FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                                       (last, _PAGE)).fetchall()
            if not rows:
                return
            for row in rows:
                _decode(row)
                yield int(row[0])
            last = int(rows[-1][0])
            await asyncio.sleep(0)  # between pages, let appends and other readers run (as lighthouse does)

    async def follow(self) -> AsyncIterator[str]:
        head = self.reader.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
        while True:
            rows = self.reader.execute(f"SELECT {_COLUMNS} FROM events WHERE seq > ? ORDER BY seq",
                                       (head,)).fetchall()
            for row in rows:
                _decode(row)
                head = int(row[0])
                yield str(row[1])
            await asyncio.sleep(POLL_INTERVAL_S)

    def stats(self) -> dict[str, float]:
        count = self.reader.execute("SELECT count(*) FROM events").fetchone()[0]
        size = sum(p.stat().st_size for p in self.path.parent.glob(f"{_SQLITE_FILE}*"))
        return {"events": count, "bytes_on_disk": size}


def _decode(row: tuple[Any, ...]) -> dict[str, Any]:
    data = msgpack.unpackb(row[-1], strict_map_key=False)
    return {"sequence": row[0], "event_id": row[1], "event_type": row[2], "aggregate_id": row[3],
            "source_agent": row[4], "correlation_id": row[5], "causation_id": row[6], "recorded_at": row[7],
            "data": data}


def make_peer(name: str, data_dir: Path, **options: Any) -> Peer:
    """A closed peer by name; ``options`` go to lighthouse (ignored for SQLite's fixed, durable configuration)."""
    if name == "lighthouse":
        return LighthousePeer(data_dir, **options)
    if name == "sqlite":
        return SqlitePeer(data_dir)
    raise ValueError(f"unknown peer {name!r}; expected one of {PEER_NAMES}")


@asynccontextmanager
async def open_peers(root: Path, **lighthouse_options: Any) -> AsyncIterator[dict[str, Peer]]:
    """Both peers, open, each in ``root/<name>`` (existing data is kept: copy a filled store there first)."""
    peers = {name: make_peer(name, root / name, **lighthouse_options) for name in PEER_NAMES}
    opened: list[Peer] = []
    try:
        for peer in peers.values():
            await peer.open()
            opened.append(peer)
        yield peers
    finally:
        for peer in reversed(opened):
            await peer.close()
