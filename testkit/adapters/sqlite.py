"""A second store behind the same protocol: stdlib sqlite3 in WAL mode.

It proves the kit is not tied to lighthouse, and it is the peer every suite measures against.
``synchronous="FULL"`` makes each commit durable; ``"OFF"`` is the known-bad configuration the
chaos suite must catch losing acknowledged events under power cuts. SQLite documents that in WAL
mode ``NORMAL`` "might roll back" committed transactions "following a power loss or system crash",
so ``NORMAL`` expects power-cut losses too (never SIGKILL losses).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgpack

from testkit.adapters.base import AdapterError, StoredEvent, check_query_limit, read_pages
from testkit.adapters.validation import stored_copy, validate_batch
from testkit.chaos.capabilities import Capabilities, declaring

__all__ = ["SqliteAdapter", "sqlite_full", "sqlite_normal", "sqlite_off"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT UNIQUE NOT NULL,
    event_type TEXT NOT NULL,
    aggregate_id TEXT NOT NULL,
    source_agent TEXT NOT NULL,
    correlation_id TEXT,
    causation_id TEXT,
    recorded_at REAL NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_type ON events(event_type);
CREATE INDEX IF NOT EXISTS events_by_aggregate ON events(aggregate_id);
"""
_INSERT = (
    "INSERT INTO events(event_id, event_type, aggregate_id, source_agent, correlation_id, causation_id,"
    " recorded_at, data) VALUES (?,?,?,?,?,?,?,?)"
)
_PAGE = 5000
_SELECT = "SELECT seq, event_id, event_type, aggregate_id, source_agent, correlation_id, causation_id, data FROM events"


def _row(event: Mapping[str, Any]) -> tuple[Any, ...]:
    try:
        data = msgpack.packb(dict(event.get("data") or {}), use_bin_type=True)
    except MemoryError:
        raise AdapterError("out of memory encoding the event", code="resource_exhausted", retryable=True) from None
    except (TypeError, ValueError, OverflowError) as exc:
        raise AdapterError(f"event data is not serialisable: {exc}", code="invalid_event") from None
    return (
        event["event_id"],
        str(event["event_type"]),
        event["aggregate_id"],
        event.get("source_agent") or "system",
        event.get("correlation_id"),
        event.get("causation_id"),
        time.time(),
        data,
    )


def _stored(row: tuple[Any, ...]) -> StoredEvent:
    seq, event_id, event_type, aggregate_id, source_agent, correlation_id, causation_id, data = row
    return StoredEvent(
        event_id=event_id,
        sequence=seq,
        event_type=event_type,
        aggregate_id=aggregate_id,
        source_agent=source_agent,
        data=msgpack.unpackb(data, strict_map_key=False),
        correlation_id=correlation_id,
        causation_id=causation_id,
    )


class SqliteAdapter:
    """Events in one SQLite table; every append is one transaction on one dedicated thread."""

    #: SQLite in WAL mode must create its -shm file to open, so it cannot open on a read-only or full filesystem;
    #: it keeps no page checksums, so damaged bytes can be served as an event nobody wrote (known unsafe).
    testkit_capabilities = Capabilities(io_target="events.db", opens_read_only=False,
                                        expected_loss=frozenset({"corruption"}))

    def __init__(self, data_dir: str | os.PathLike[str], *, synchronous: str = "FULL") -> None:
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"unknown synchronous mode {synchronous!r}")
        self.data_dir = Path(data_dir)
        self.synchronous = synchronous.upper()
        self.name = "sqlite" if self.synchronous == "FULL" else f"sqlite[synchronous={self.synchronous}]"
        durable = self.synchronous in ("FULL", "EXTRA")
        self.expected_loss: frozenset[str] = frozenset() if durable else frozenset({"power_cut", "posix_crash"})
        self._conn: sqlite3.Connection | None = None
        self._thread: ThreadPoolExecutor | None = None

    async def _run(self, fn: Any, *args: Any) -> Any:
        if self._thread is None:
            raise AdapterError("adapter is not open", code="store_closed")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)
        except MemoryError:
            raise AdapterError("out of memory", code="resource_exhausted", retryable=True) from None
        except sqlite3.IntegrityError as exc:
            raise AdapterError(str(exc), code="duplicate_event") from None
        except sqlite3.OperationalError as exc:
            raise AdapterError(str(exc), code="write_failed", retryable=True) from None
        except sqlite3.DatabaseError as exc:
            raise AdapterError(str(exc), code="store_corrupted") from None

    def _connect(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.data_dir / "events.db", isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.executescript(_SCHEMA)
        self._conn = conn

    async def open(self) -> None:
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-adapter")
        await self._run(self._connect)

    def _append_rows(self, rows: list[tuple[Any, ...]]) -> list[int]:
        assert self._conn is not None
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            seqs = [conn.execute(_INSERT, row).lastrowid for row in rows]
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return [int(s) for s in seqs if s is not None]

    async def append(self, event: Mapping[str, Any]) -> StoredEvent:
        return (await self.append_batch([event]))[0]

    async def append_batch(self, events: Sequence[Mapping[str, Any]]) -> list[StoredEvent]:
        events = validate_batch(events)
        rows = [_row(e) for e in events]
        seqs = await self._run(self._append_rows, rows)
        return [stored_copy(e, seq) for e, seq in zip(events, seqs, strict=True)]

    def _select(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        assert self._conn is not None
        return self._conn.execute(sql, params).fetchall()

    async def read_all(self) -> AsyncIterator[StoredEvent]:
        page = _SELECT + f" WHERE seq > ? ORDER BY seq LIMIT {_PAGE}"
        async for event in read_pages(lambda after: self._run(self._select, page, (after,)), _PAGE,
                                      lambda row: int(row[0]), _stored):
            yield event

    async def query(
        self,
        *,
        event_types: Sequence[str] | None = None,
        aggregate_ids: Sequence[str] | None = None,
        limit: int = 1000,
    ) -> list[StoredEvent]:
        check_query_limit(limit)
        where, params = [], []
        if event_types:
            where.append(f"event_type IN ({','.join('?' * len(event_types))})")
            params.extend(str(t) for t in event_types)
        if aggregate_ids:
            where.append(f"aggregate_id IN ({','.join('?' * len(aggregate_ids))})")
            params.extend(aggregate_ids)
        sql = _SELECT + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY seq LIMIT ?"
        rows = await self._run(self._select, sql, (*params, limit))
        return [_stored(r) for r in rows]

    async def close(self) -> None:
        if self._thread is None:
            return
        if self._conn is not None:
            await self._run(self._conn.close)
            self._conn = None
        self._thread.shutdown(wait=True)
        self._thread = None


@declaring(SqliteAdapter.testkit_capabilities)
def sqlite_full(data_dir: str | os.PathLike[str], **options: Any) -> SqliteAdapter:
    """WAL, ``synchronous=FULL``: every commit synced."""
    return SqliteAdapter(data_dir, **{"synchronous": "FULL", **options})


@declaring(SqliteAdapter.testkit_capabilities)
def sqlite_normal(data_dir: str | os.PathLike[str], **options: Any) -> SqliteAdapter:
    """WAL, ``synchronous=NORMAL``: safe from application crashes, not from power loss."""
    return SqliteAdapter(data_dir, **{"synchronous": "NORMAL", **options})


@declaring(SqliteAdapter.testkit_capabilities)
def sqlite_off(data_dir: str | os.PathLike[str], **options: Any) -> SqliteAdapter:
    """WAL, ``synchronous=OFF``: never syncs; power loss may lose (or corrupt) anything recent."""
    return SqliteAdapter(data_dir, **{"synchronous": "OFF", **options})
