"""The state the store's paths share, declared in one place, and the small helpers they all use.

``EventStore`` is assembled from four paths (write, recovery, read, health), each a mixin over
this base. The base declares every attribute a path may touch, so a reader of one path can see
here what the others may change, and the one operation all of them need: publishing frames to
the in-memory index.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import os
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Literal

import msgpack

from lighthouse.checkpoint import CheckpointMap, FileIdentity
from lighthouse.errors import StoreClosed
from lighthouse.fencing import WriterFence
from lighthouse.health import HealthMonitor
from lighthouse.index import EventIndex
from lighthouse.models import Event, EventType
from lighthouse.recovery import Damage
from lighthouse.segments import FrameReader
from lighthouse.snapshots import SnapshotStore
from lighthouse.subscriptions import Subscription
from lighthouse.upcasting import UpcasterRegistry
from lighthouse.versions import AggregateVersions

__all__ = ["Durability", "StoreState", "TYPE_CODES"]

Durability = Literal["fsync", "batch", "none"]
DURABILITIES = ("fsync", "batch", "none")
TYPE_CODES: dict[str, int] = {t.value: i for i, t in enumerate(EventType)}
# an event's fields by position (``Event`` is a tuple): a frame's column in one pass
_ID_OF, _TYPE_OF, _AGGREGATE_OF, _CORRELATION_OF, _CAUSATION_OF, _SOURCE_OF = map(itemgetter, (0, 1, 2, 4, 5, 6))


@dataclass(slots=True)
class Segment:
    number: int
    first_seq: int
    path: Path
    size: int
    #: the sequence a scan of this segment expects first (``first_seq`` unless sequences were lost before it)
    scan_start: int = 0


@dataclass(slots=True)
class Pending:
    """One append or batch waiting for the writer: its events, their encoded records, its future, and its
    ids' ``id_keys`` (for the duplicate check and the index: hashed once)."""

    events: list[Event]
    records: list[bytes]
    expected: Mapping[str, int] | None
    future: asyncio.Future[list[Event]]
    keys: list[int]


class StoreState:
    """Attributes shared by the store's paths (set by ``EventStore.__init__``)."""

    path: Path
    durability: Durability
    segment_bytes: int
    sync_interval: float
    min_free_bytes: int
    warn_free_bytes: int
    probe_interval: float
    subscriber_buffer: int
    upcasters: UpcasterRegistry
    _snapshots: SnapshotStore
    _health: HealthMonitor
    _index: EventIndex
    _reader: FrameReader
    _segments: list[Segment]
    _versions: AggregateVersions
    _next_seq: int
    _last_recorded_at: float
    _pending: list[Pending]
    #: the writer task is inside a commit (which may await the I/O thread): no append may commit meanwhile
    _committing: bool
    #: appends have been coming one at a time (the latest group held one): a lone one may commit in its own task
    _lone_appender: bool
    #: lone appends that committed in their own task and are yielding once before they return
    _yielding_lone: int
    #: sequences handed to a write that failed: (first, count, reason), recorded by the next write
    _void: tuple[int, int, str] | None
    _damage: list[Damage]
    _voided: list[tuple[int, int]]
    _subscribers: set[Subscription]
    _packer: msgpack.Packer
    _lock_fd: int | None
    _read_corruptions: int
    _fence: WriterFence
    _write_fd: int | None
    #: the newest segment's file holds allocated blocks up to here (see ``WritePath._reserve``)
    _allocated_end: int
    _tail_dirty: bool
    _unsynced: bool
    #: how long the latest group's write (and sync) took, for choosing where the next lone append syncs
    _last_write_seconds: float
    _write_ns: int
    _read_only_fs: bool
    _unclaimed_view: tuple[list[str], int, int] | None
    _opened: bool
    _closed: bool
    _closing: bool
    _io: ThreadPoolExecutor | None
    _wake: asyncio.Event | None
    _writer_task: asyncio.Task[None] | None
    _probe_task: asyncio.Task[None] | None
    _flusher_task: asyncio.Task[None] | None
    _counters: dict[str, int]
    _quarantined_bytes: int
    _torn_bytes: int
    _open_seconds: float
    #: index checkpoints: write one after this many new events (0: only on close)
    checkpoint_every: int
    #: (offset, crc) of the newest frame in the newest segment, for the checkpoint's staleness check
    _last_frame: tuple[int, int] | None
    _checkpoint_rows: int
    _checkpoint_status: dict[str, object]
    _checkpoint_task: asyncio.Future[None] | None
    _checkpoint_io: ThreadPoolExecutor | None
    #: the loaded checkpoint's mapping, which the index's columns and ids are views of (closed on close)
    _checkpoint_map: CheckpointMap | None
    #: the checkpoint the last one written replaced, kept to be written over by the next (see lighthouse.checkpoint)
    _reusable_checkpoint: FileIdentity | None

    @property
    def head_sequence(self) -> int:
        """The highest durable (acknowledged) sequence; 0 for an empty store."""
        return self._next_seq - 1 if self._void is None else self._void[0] - 1

    def _check_open(self) -> None:
        if not self._opened or self._closing or self._closed:
            raise StoreClosed("the store is not open")

    def _index_events(
        self,
        first: int,
        segment: int,
        offset: int,
        record_offsets: list[int],
        recorded_at: float,
        events: Sequence[Event],
        versions: list[int],
        keys: list[int] | None = None,
    ) -> None:
        """Publish one frame's events (where each record starts in it, and each event's aggregate version) to
        the index (recovery and the writer both do this); ``keys``: their ids' ``id_keys``, if known."""
        codes = TYPE_CODES
        if len(events) == 1:  # the common single append: one row is cheaper added directly
            e = events[0]
            self._index.add(
                first, segment, offset, 0, record_offsets[0], recorded_at, codes[e[1]], e[0], e[2], e[6], e[4], e[5],
                versions[0], None if keys is None else keys[0],
            )
            return
        self._index.add_frame(
            first,
            segment,
            offset,
            record_offsets,
            recorded_at,
            list(map(codes.__getitem__, map(_TYPE_OF, events))),
            list(map(_ID_OF, events)),
            list(map(_AGGREGATE_OF, events)),
            list(map(_SOURCE_OF, events)),
            list(map(_CORRELATION_OF, events)),
            list(map(_CAUSATION_OF, events)),
            versions,
            keys,
        )

    # ---- one path calls another through these; each is defined by exactly one path mixin
    def _create_segment(self, first_seq: int) -> tuple[Segment, int]:
        raise NotImplementedError  # the write path

    def _before_write(self) -> None:
        raise NotImplementedError  # the write path

    async def append(self, event: Event, *, expected_version: int | None = None, from_wire: bool = False) -> Event:
        raise NotImplementedError  # the write path

    def _find_by_id(self, event_id: str) -> Event | None:
        raise NotImplementedError  # the read path

    def _event_at_sequence(self, sequence: int) -> Event | None:
        raise NotImplementedError  # the read path

    def _newest_event_of(self, aggregate: str) -> Event | None:
        raise NotImplementedError  # the read path

    def _maybe_checkpoint(self) -> None:
        raise NotImplementedError  # the checkpoint path

    def _enter_read_only(self, exc: OSError, doing: str) -> None:
        raise NotImplementedError  # the health path

    def _check_free_space(self) -> None:
        raise NotImplementedError  # the health path

    def lost_sequences(self) -> list[tuple[int, int]]:
        raise NotImplementedError  # the health path


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic GC while a page of events is decoded (as msgpack's docs advise for large unpacks).

    Decoding creates thousands of containers at once and none of them can be garbage yet; a collection
    in the middle only promotes them, and enough promotions trigger a full collection of the whole heap:
    that was the whole p99 of a 1,000-event query. No user code runs inside (there is no await), and a
    collector the caller had switched off stays off.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def write_all(fd: int, data: bytes, offset: int) -> None:
    """pwrite until every byte is written: a short write is not success."""
    view = memoryview(data)
    try:
        written = 0
        while written < len(data):
            n = os.pwrite(fd, view[written:], offset + written)
            if n <= 0:
                raise OSError(errno.EIO, "write made no progress")
            written += n
    finally:
        view.release()


def merge_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Adjacent or overlapping inclusive ranges as one: (2, 2) and (3, 3) are (2, 3)."""
    merged: list[tuple[int, int]] = []
    for first, last in sorted(ranges):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged
