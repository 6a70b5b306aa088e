"""The event store: durable group-committed appends, indexed reads, recovery, degradation.

Writes go through one writer task. Appends queue up while the previous group is being written;
the writer then writes every queued frame with one ``write`` and one ``fdatasync`` and only then
acknowledges each append in the group. Reads are served from checksummed frames found through
the in-memory index. On open, segments are scanned: a torn tail is truncated, corruption in the
middle is quarantined and reported, never silently truncated away.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import gc
import itertools
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import crc32c
import msgpack

from lighthouse.errors import (
    BatchTooLarge,
    ConcurrencyConflict,
    DuplicateEvent,
    EventNotFound,
    EventTooLarge,
    InvalidCursor,
    InvalidEvent,
    InvalidQuery,
    InvalidSnapshot,
    LighthouseError,
    ResourceExhausted,
    StoreClosed,
    StoreLocked,
    StoreReadOnly,
    WriteFailed,
)
from lighthouse.framing import encode_events_frame, encode_segment_header, encode_void_frame
from lighthouse.health import HealthMonitor, HealthState, StoreHealth
from lighthouse.index import EventIndex, hash_key
from lighthouse.models import (
    CLIENT_FIELD_COUNT,
    MAX_BATCH_BYTES,
    MAX_BATCH_EVENTS,
    MAX_EVENT_BYTES,
    MAX_QUERY_LIMIT,
    Event,
    EventFilter,
    EventType,
    QueryResult,
    Snapshot,
)
from lighthouse.recovery import Damage
from lighthouse.segments import FrameReader, WindowReader, scan_directory, segment_name
from lighthouse.snapshots import SnapshotStore, fsync_directory
from lighthouse.subscriptions import Subscription
from lighthouse.upcasting import UpcasterRegistry

__all__ = ["Durability", "EventStore", "StoreStats"]

Durability = Literal["fsync", "batch", "none"]
_DURABILITIES = ("fsync", "batch", "none")
TYPE_CODES: dict[str, int] = {t.value: i for i, t in enumerate(EventType)}
_new = tuple.__new__
_PROBE_BYTES = 64 * 1024
_FETCH_SPAN = 4 << 20
_FETCH_GAP = 64 << 10
_DAMAGE_NAMESPACE = uuid.UUID("5b470d10-ad5f-4bb8-a000-000000000001")


@dataclass(frozen=True, slots=True)
class StoreStats:
    events: int
    head_sequence: int
    segments: int
    bytes_on_disk: int
    index_bytes: int
    appends: int
    batches: int
    groups: int
    fsyncs: int
    subscribers: int
    quarantined_bytes: int
    torn_tail_bytes_truncated: int
    lost_sequences: list[tuple[int, int]]
    open_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}  # type: ignore[attr-defined]


@dataclass(slots=True)
class _Segment:
    number: int
    first_seq: int
    path: Path
    size: int


@dataclass(slots=True)
class _Pending:
    events: list[Event]
    records: list[bytes]
    expected: Mapping[str, int] | None
    future: asyncio.Future[list[Event]]


class EventStore:
    """An append-only, durable event log in one directory (single writer, fenced by a file lock).

    Use ``async with EventStore(path) as store:`` or ``store = await EventStore.open(path)``.

    ``durability``: ``"fsync"`` (default) acknowledges an append only after fdatasync; ``"batch"``
    acknowledges after write and syncs every ``sync_interval`` seconds; ``"none"`` never syncs until
    close. The last two exist for benchmarks and ``health()`` says that acknowledgements are not durable.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durability: Durability = "fsync",
        segment_bytes: int = 64 * 1024 * 1024,
        sync_interval: float = 0.05,
        min_free_bytes: int = 0,
        warn_free_bytes: int = 0,
        probe_interval: float = 0.2,
        subscriber_buffer: int = 10_000,
        snapshot_keep: int = 3,
        upcasters: UpcasterRegistry | None = None,
    ) -> None:
        if durability not in _DURABILITIES:
            raise ValueError(f"durability must be one of {_DURABILITIES}, got {durability!r}")
        if not 4096 <= segment_bytes <= 1 << 31:
            raise ValueError("segment_bytes must be between 4 KiB and 2 GiB")
        self.path = Path(path)
        self.durability: Durability = durability
        self.segment_bytes = segment_bytes
        self.sync_interval = sync_interval
        self.min_free_bytes = min_free_bytes
        self.warn_free_bytes = warn_free_bytes
        self.probe_interval = probe_interval
        self.subscriber_buffer = subscriber_buffer
        self.upcasters = upcasters if upcasters is not None else UpcasterRegistry()
        self._snapshots = SnapshotStore(self.path / "snapshots", keep=snapshot_keep)
        self._health = HealthMonitor()
        self._index = EventIndex()
        self._reader = FrameReader()
        self._segments: list[_Segment] = []
        self._versions: dict[str, int] = {}
        self._next_seq = 1
        self._last_recorded_at = 0.0
        self._pending: list[_Pending] = []
        self._void: tuple[int, int, str] | None = None
        self._damage: list[Damage] = []
        self._voided: list[tuple[int, int]] = []
        self._subscribers: set[Subscription] = set()
        self._packer = msgpack.Packer(use_bin_type=True)
        self._lock_fd: int | None = None
        self._write_fd: int | None = None
        self._tail_dirty = False
        self._unsynced = False
        self._read_only_fs = False
        self._opened = False
        self._closed = False
        self._closing = False
        self._io: ThreadPoolExecutor | None = None
        self._wake: asyncio.Event | None = None
        self._writer_task: asyncio.Task[None] | None = None
        self._probe_task: asyncio.Task[None] | None = None
        self._flusher_task: asyncio.Task[None] | None = None
        self._counters = {"appends": 0, "batches": 0, "groups": 0, "fsyncs": 0}
        self._quarantined_bytes = 0
        self._torn_bytes = 0
        self._open_seconds = 0.0

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    async def open(cls, path: str | os.PathLike[str], **options: Any) -> EventStore:
        store = cls(path, **options)
        await store._open()
        return store

    async def __aenter__(self) -> EventStore:
        await self._open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def head_sequence(self) -> int:
        """The highest durable (acknowledged) sequence; 0 for an empty store."""
        return self._next_seq - 1 if self._void is None else self._void[0] - 1

    async def _open(self) -> None:
        if self._opened:
            return
        started = time.perf_counter()
        if not self.path.is_dir():
            self.path.mkdir(parents=True, exist_ok=True)
            fsync_directory(self.path.parent)  # the new directory's name is durable before anything in it
        self._acquire_lock()
        try:
            self._recover()
        except BaseException:
            self._release_lock()
            raise
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lighthouse-io")
        self._wake = asyncio.Event()
        self._writer_task = asyncio.get_running_loop().create_task(self._writer_loop(), name="lighthouse-writer")
        if self.durability == "batch":
            self._flusher_task = asyncio.get_running_loop().create_task(self._flusher_loop())
        self._opened = True
        self._open_seconds = time.perf_counter() - started
        await self._record_damage_events()

    async def _record_damage_events(self) -> None:
        """Each damaged range found on open becomes one ``corruption_detected`` event (once, ever)."""
        for damage in self._damage:
            if damage.kind == "torn_tail":
                continue
            key = f"{damage.segment}@{damage.start}-{damage.end}:{damage.kind}"
            event_id = str(uuid.uuid5(_DAMAGE_NAMESPACE, key))
            if self._find_by_id(event_id) is not None:
                continue
            event = Event(
                EventType.CORRUPTION_DETECTED,
                aggregate_id="store:integrity",
                event_id=event_id,
                source_agent="lighthouse",
                data=damage.to_dict(),
            )
            try:
                await self.append(event)
            except LighthouseError as exc:  # read-only or failing disk: health still reports the damage
                self._health.last_error = f"could not record corruption event: {exc}"

    def _acquire_lock(self) -> None:
        try:
            fd = os.open(self.path / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            if exc.errno != errno.EROFS:
                raise
            # A read-only filesystem: lock the directory itself and serve reads without writing anything.
            fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
            self._read_only_fs = True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreLocked(f"{self.path} is in use by another process or store", path=str(self.path)) from None
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def _recover(self) -> None:
        """Scan every segment, truncate a torn tail, quarantine corruption, rebuild the index."""
        reports = scan_directory(self.path)
        expected = 1
        for number, report in enumerate(reports):
            for damage in report.scan.damage:
                self._handle_damage(report.path, damage)
            if report.scan.truncate_at is not None and not self._read_only_fs:
                self._truncate_torn_tail(report.path, report.scan.truncate_at)
            segment = _Segment(number, report.first_seq_from_name, report.path, report.path.stat().st_size)
            self._segments.append(segment)
            fd = os.open(report.path, os.O_RDONLY)
            self._reader.add_segment(number, fd)
            self._index_frames(segment, fd, report.scan.frames)
            expected = report.scan.next_sequence
        self._next_seq = expected
        if self._segments and self._segments[-1].size == 0 and not self._read_only_fs:
            # An empty last segment (its header never reached the disk): rewrite the header.
            self._write_segment_header(self._segments[-1])
        if self._read_only_fs:
            self._health.raise_condition(
                "read_only_filesystem",
                HealthState.READ_ONLY,
                "the filesystem is read-only: serving reads; reopen after it is writable again",
            )
        elif not self._segments:
            _segment, self._write_fd = self._create_segment(self._next_seq)
        else:
            self._write_fd = os.open(self._segments[-1].path, os.O_WRONLY)
        _release_free_heap()
        damaged = [d for d in self._damage if d.kind != "torn_tail"]
        if damaged:
            self._health.raise_condition(
                "corruption",
                HealthState.DEGRADED,
                f"{len(damaged)} damaged range(s) quarantined; lost sequences {self.lost_sequences()}",
            )

    def _index_frames(self, segment: _Segment, fd: int, frames: list[tuple[int, Any]]) -> None:
        reader = WindowReader(fd, window=4 << 20)
        versions = self._versions
        for offset, header in frames:
            if header.kind != 1:
                self._voided.append((header.first_seq, header.last_seq))
                continue
            _, events = reader.frame_at(offset, name=segment.path.name)
            if not events:
                continue
            self._index_events(header.first_seq, segment.number, offset, events[0][12], events)
            for event in events:
                versions[event[2]] = event[13]
            self._last_recorded_at = events[0][12]

    def _index_events(
        self, first: int, segment: int, offset: int, recorded_at: float, events: Sequence[Event]
    ) -> None:
        codes = TYPE_CODES
        if len(events) == 1:  # the common single append: one row is cheaper added directly
            e = events[0]
            self._index.add(first, segment, offset, 0, recorded_at, codes[e[1]], e[0], e[2], e[6], e[4], e[5])
            return
        self._index.add_frame(
            first,
            segment,
            offset,
            recorded_at,
            [codes[e[1]] for e in events],
            [e[0] for e in events],
            [e[2] for e in events],
            [e[6] for e in events],
            [e[4] for e in events],
            [e[5] for e in events],
        )

    def _handle_damage(self, path: Path, damage: Damage) -> None:
        self._damage.append(damage)
        if damage.end > damage.start and not self._read_only_fs:
            self._quarantine(path, damage)

    def _quarantine(self, path: Path, damage: Damage) -> None:
        """Copy damaged bytes aside (once) with a description, so nothing is thrown away unseen."""
        folder = self.path / "quarantine"
        folder.mkdir(exist_ok=True)
        base = folder / f"{path.stem}@{damage.start}-{damage.end}.{damage.kind}"
        if not base.with_suffix(base.suffix + ".bad").exists():
            with open(path, "rb") as src:
                src.seek(damage.start)
                raw = src.read(damage.end - damage.start)
            tmp = base.with_suffix(base.suffix + ".tmp")
            with open(tmp, "wb") as out:
                out.write(raw)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, base.with_suffix(base.suffix + ".bad"))
            info = dict(damage.to_dict(), quarantined_at=time.time())
            base.with_suffix(base.suffix + ".json").write_text(json.dumps(info, indent=2))
            fsync_directory(folder)
        if damage.kind == "torn_tail":
            self._torn_bytes += damage.end - damage.start
        else:
            self._quarantined_bytes += damage.end - damage.start

    def _truncate_torn_tail(self, path: Path, at: int) -> None:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.ftruncate(fd, at)
            os.fsync(fd)
        finally:
            os.close(fd)

    def _write_segment_header(self, segment: _Segment) -> None:
        header = encode_segment_header(segment.first_seq)
        fd = os.open(segment.path, os.O_WRONLY)
        try:
            _write_all(fd, header, 0)
            os.fsync(fd)
        finally:
            os.close(fd)
        segment.size = len(header)

    def _create_segment(self, first_seq: int) -> tuple[_Segment, int]:
        """Create, fsync and publish (directory fsync) a new segment before anything is written to it.

        Returns the segment and a descriptor to write it. Nothing is published (to the store's segment
        list or its readers) until the file, its header and both descriptors exist: a failure part-way
        (ENOSPC, EMFILE, a short write) removes the file and leaves the store writing where it was.
        """
        path = self.path / segment_name(first_seq)
        header = encode_segment_header(first_seq)
        opened: list[int] = []
        try:
            write_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            opened.append(write_fd)
            _write_all(write_fd, header, 0)
            self._sync_file(write_fd, full=True)
            self._sync_directory()
            read_fd = os.open(path, os.O_RDONLY)
            opened.append(read_fd)
        except BaseException:
            for fd in opened:
                os.close(fd)
            path.unlink(missing_ok=True)
            raise
        segment = _Segment(len(self._segments), first_seq, path, len(header))
        self._segments.append(segment)
        self._reader.add_segment(segment.number, read_fd)
        return segment, write_fd

    # Hooks kept separate so that the chaos suite's deliberately broken variants can override them.
    def _sync_file(self, fd: int, *, full: bool = False) -> None:
        if full:
            os.fsync(fd)
        else:
            os.fdatasync(fd)
        self._counters["fsyncs"] += 1

    def _sync_directory(self) -> None:
        fsync_directory(self.path)

    async def close(self) -> None:
        """Stop accepting appends, finish the queued ones, sync, release the directory."""
        if self._closed or not self._opened:
            self._closed = True
            return
        self._closing = True
        assert self._wake is not None
        self._wake.set()
        if self._writer_task is not None:
            await self._writer_task
        for task in (self._probe_task, self._flusher_task):
            if task is not None:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        if self._write_fd is not None:
            try:
                if self._unsynced:
                    os.fdatasync(self._write_fd)
            except OSError:
                pass
            os.close(self._write_fd)
            self._write_fd = None
        self._closed = True
        for sub in list(self._subscribers):
            sub.end()
        self._reader.close()
        if self._io is not None:
            self._io.shutdown(wait=True)
        self._release_lock()

    # ------------------------------------------------------------------ appends

    @staticmethod
    def _normalise(event: Any) -> Event:
        if isinstance(event, Event):
            return event
        if isinstance(event, Mapping):
            return Event.from_dict(event)
        raise InvalidEvent(f"expected an Event, got {type(event).__name__}")

    def _encode(self, event: Event) -> bytes:
        try:
            record = self._packer.pack(event.client_record())
            msgpack.unpackb(record, strict_map_key=False)  # never write what we could not read back
        except MemoryError:
            raise ResourceExhausted("out of memory while encoding the event") from None
        except (TypeError, ValueError, OverflowError, msgpack.ExtraData, msgpack.StackError) as exc:
            raise InvalidEvent(f"event {event.event_id} is not serialisable: {exc}", event_id=event.event_id) from None
        if len(record) > MAX_EVENT_BYTES:
            raise EventTooLarge(
                f"event {event.event_id} encodes to {len(record)} bytes; the limit is {MAX_EVENT_BYTES}",
                event_id=event.event_id,
                size=len(record),
                limit=MAX_EVENT_BYTES,
            )
        return record

    def _check_open(self) -> None:
        if not self._opened or self._closing or self._closed:
            raise StoreClosed("the store is not open")

    def _check_writable(self) -> None:
        self._check_open()
        if self._health.state in (HealthState.READ_ONLY, HealthState.FAILED):
            reason = self._health.reason_for(HealthState.READ_ONLY) or "store failed"
            raise StoreReadOnly(f"the store is read-only: {reason}", reason=reason)

    async def append(self, event: Event, *, expected_version: int | None = None) -> Event:
        """Append one event; returns the stored copy once it is durable."""
        self._check_writable()
        event = self._normalise(event)
        record = self._encode(event)
        expected = None
        if expected_version is not None:
            if isinstance(expected_version, bool) or not isinstance(expected_version, int) or expected_version < 0:
                raise InvalidEvent("expected_version must be a non-negative integer")
            expected = {event.aggregate_id: expected_version}
        stored = await self._submit([event], [record], expected)
        self._counters["appends"] += 1
        return stored[0]

    async def append_batch(
        self, events: Sequence[Event], *, expected_versions: Mapping[str, int] | None = None
    ) -> list[Event]:
        """Append 1..1000 events atomically (one frame: all survive a crash or none do)."""
        self._check_writable()
        if isinstance(events, (str, bytes, Mapping)) or not isinstance(events, Sequence):
            raise InvalidEvent("a batch must be a list of events")
        if not 1 <= len(events) <= MAX_BATCH_EVENTS:
            raise BatchTooLarge(
                f"a batch holds 1..{MAX_BATCH_EVENTS} events, got {len(events)}", count=len(events)
            )
        normalised = [self._normalise(e) for e in events]
        records = [self._encode(e) for e in normalised]
        total = sum(len(r) for r in records)
        if total > MAX_BATCH_BYTES:
            raise BatchTooLarge(f"batch encodes to {total} bytes; the limit is {MAX_BATCH_BYTES}", size=total)
        ids = [e.event_id for e in normalised]
        if len(set(ids)) != len(ids):
            raise InvalidEvent("a batch contains the same event_id twice")
        if expected_versions is not None:
            if not isinstance(expected_versions, Mapping) or not all(
                isinstance(k, str) and not isinstance(v, bool) and isinstance(v, int) and v >= 0
                for k, v in expected_versions.items()
            ):
                raise InvalidEvent("expected_versions must map aggregate ids to non-negative integers")
        stored = await self._submit(normalised, records, expected_versions)
        self._counters["batches"] += 1
        return stored

    async def _submit(
        self, events: list[Event], records: list[bytes], expected: Mapping[str, int] | None
    ) -> list[Event]:
        future: asyncio.Future[list[Event]] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(events, records, expected, future))
        assert self._wake is not None
        self._wake.set()
        return await future

    async def _writer_loop(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            group, self._pending = self._pending, []
            flush_void = self._void is not None and self._health.state not in (
                HealthState.READ_ONLY,
                HealthState.FAILED,
            )
            if not group and not flush_void:
                if self._closing:
                    return
                continue
            try:
                await self._commit(group)
            except BaseException as exc:  # never leave an appender waiting forever
                for pending in group:
                    if not pending.future.done():
                        pending.future.set_exception(
                            exc if isinstance(exc, LighthouseError) else WriteFailed(f"append failed: {exc!r}")
                        )
                if isinstance(exc, asyncio.CancelledError):
                    raise
            if self._pending or self._closing:
                self._wake.set()

    def _find_by_id(self, event_id: str) -> Event | None:
        for seq in self._index.sequences_for_id(event_id):
            stored = self._event_at_sequence(seq)
            if stored is not None and stored.event_id == event_id:
                return stored
        return None

    @staticmethod
    def _same_group_origins(
        pending: _Pending, group_ids: dict[str, tuple[bytes, _Pending, int]]
    ) -> list[tuple[_Pending, int]] | None:
        """An identical retry of an append already in this group shares its outcome; other content with
        the same id is a conflict."""
        in_group = [group_ids.get(event.event_id) for event in pending.events]
        if not any(in_group):
            return None
        if all(hit is not None and hit[0] == record for hit, record in zip(in_group, pending.records)):
            return [(hit[1], hit[2]) for hit in in_group if hit is not None]
        raise DuplicateEvent("an event of this append is already being appended with other content")

    def _already_stored(self, pending: _Pending) -> list[Event] | None:
        """An append whose ids are all stored with the same content is a retry: it gets the stored copies."""
        found: list[Event] = []
        for event, record in zip(pending.events, pending.records):
            stored = self._find_by_id(event.event_id)
            if stored is not None:
                if self._packer.pack(stored.client_record()) != record:
                    raise DuplicateEvent(
                        f"event {event.event_id} is already stored with different content", event_id=event.event_id
                    )
                found.append(stored)
        if not found:
            return None
        if len(found) != len(pending.events):
            raise DuplicateEvent("some events of this batch are already stored, others are not")
        return found

    async def _commit(self, group: list[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        if self._health.state in (HealthState.READ_ONLY, HealthState.FAILED) or self._closed:
            reason = self._health.reason_for(HealthState.READ_ONLY) or "store failed"
            for pending in group:
                pending.future.set_exception(StoreReadOnly(f"the store is read-only: {reason}", reason=reason))
            return
        if self.min_free_bytes or self.warn_free_bytes:
            self._check_free_space()
            if self._health.has("low_disk_space"):
                for pending in group:
                    pending.future.set_exception(
                        StoreReadOnly("the store is read-only: free disk space below the minimum")
                    )
                return
        if self._segments[-1].size >= self.segment_bytes:
            first = self._void[0] if self._void else self._next_seq
            try:
                await loop.run_in_executor(self._io, self._rotate, first)
            except OSError as exc:
                self._enter_read_only(exc, "rotating to a new segment")
                for pending in group:
                    pending.future.set_exception(
                        WriteFailed(f"could not start a new segment: {exc.strerror}", errno=exc.errno, outcome="not_written")
                    )
                return
        segment = self._segments[-1]
        frames: list[bytes] = []
        offset = segment.size
        if self._void is not None:
            frames.append(encode_void_frame(*self._void))
            offset += len(frames[-1])
        recorded_at = max(time.time(), self._last_recorded_at)
        next_seq = self._next_seq
        local_versions: dict[str, int] = {}
        group_ids: dict[str, tuple[bytes, _Pending, int]] = {}
        accepted: list[tuple[_Pending, int, int, list[int]]] = []
        followers: list[tuple[_Pending, list[tuple[_Pending, int]]]] = []
        for pending in group:
            try:
                origins = self._same_group_origins(pending, group_ids)
                stored_copies = None if origins is not None else self._already_stored(pending)
            except LighthouseError as exc:
                pending.future.set_exception(exc)
                continue
            if origins is not None:
                followers.append((pending, origins))
                continue
            if stored_copies is not None:
                pending.future.set_result(stored_copies)
                continue
            if pending.expected:
                conflict = None
                for aggregate, expected in pending.expected.items():
                    current = local_versions.get(aggregate, self._versions.get(aggregate, 0))
                    if current != expected:
                        conflict = ConcurrencyConflict(
                            f"aggregate {aggregate} is at version {current}, expected {expected}",
                            aggregate_id=aggregate,
                            expected=expected,
                            actual=current,
                        )
                        break
                if conflict is not None:
                    pending.future.set_exception(conflict)
                    continue
            versions = []
            for slot, (event, record) in enumerate(zip(pending.events, pending.records)):
                aggregate = event[2]
                version = local_versions.get(aggregate, self._versions.get(aggregate, 0)) + 1
                local_versions[aggregate] = version
                versions.append(version)
                group_ids[event[0]] = (record, pending, slot)
            frame = encode_events_frame(next_seq, recorded_at, versions, pending.records)
            accepted.append((pending, next_seq, offset, versions))
            frames.append(frame)
            offset += len(frame)
            next_seq += len(pending.events)
        if not frames:
            self._settle_followers(followers)
            return
        data = b"".join(frames)
        first_attempted = self._void[0] if self._void else self._next_seq
        try:
            await loop.run_in_executor(self._io, self._write_durably, segment.size, data)
        except OSError as exc:
            self._after_failed_write(exc, first_attempted, next_seq, accepted)
            self._settle_followers(followers)
            return
        # Durable: publish to the index, then acknowledge.
        self._counters["groups"] += 1
        if self._void is not None:
            self._voided.append((self._void[0], self._void[0] + self._void[1] - 1))
            self._void = None
        segment.size += len(data)
        self._next_seq = next_seq
        self._last_recorded_at = recorded_at
        self._versions.update(local_versions)
        published: list[Event] = []
        for pending, first, frame_offset, versions in accepted:
            self._index_events(first, segment.number, frame_offset, recorded_at, pending.events)
            stored = [
                _new(Event, (*event[:CLIENT_FIELD_COUNT], first + slot, recorded_at, versions[slot]))
                for slot, event in enumerate(pending.events)
            ]
            published.extend(stored)
            if not pending.future.done():
                pending.future.set_result(stored)
        self._settle_followers(followers)
        if self._subscribers:
            if self.upcasters:
                published = [self.upcasters.upcast(e) for e in published]
            for sub in list(self._subscribers):
                sub.offer(published)

    @staticmethod
    def _settle_followers(followers: list[tuple[_Pending, list[tuple[_Pending, int]]]]) -> None:
        """Identical retries that arrived in the same group share the original's outcome."""
        for pending, origins in followers:
            if pending.future.done():
                continue
            results = []
            for origin, slot in origins:
                if not origin.future.done() or origin.future.cancelled():
                    pending.future.set_exception(WriteFailed("the original append did not complete"))
                    break
                if origin.future.exception() is not None:
                    pending.future.set_exception(origin.future.exception())  # type: ignore[arg-type]
                    break
                results.append(origin.future.result()[slot])
            else:
                pending.future.set_result(results)

    def _write_durably(self, offset: int, data: bytes) -> None:
        """Runs on the I/O thread: write all of ``data`` at ``offset`` and sync, or leave no trace of it."""
        fd = self._write_fd
        assert fd is not None
        try:
            _write_all(fd, data, offset)
            self._sync_after_write(fd)
        except OSError:
            try:
                os.ftruncate(fd, offset)
                os.fdatasync(fd)
                self._tail_dirty = False
            except OSError:
                self._tail_dirty = True
            raise

    def _sync_after_write(self, fd: int) -> None:
        if self.durability == "fsync":
            self._sync_file(fd)
        else:
            self._unsynced = True

    def _rotate(self, first_seq: int) -> None:
        """Runs on the I/O thread: sync the full segment, then switch to a fresh, published one."""
        old_fd = self._write_fd
        assert old_fd is not None
        if self._unsynced:
            self._sync_file(old_fd)
            self._unsynced = False
        _segment, self._write_fd = self._create_segment(first_seq)
        os.close(old_fd)

    def _after_failed_write(
        self, exc: OSError, first_attempted: int, next_seq: int, accepted: list[tuple[_Pending, int, int, list[int]]]
    ) -> None:
        # Sequences handed to a failed write are never reused: they become a void range that the
        # next successful write records explicitly, so the log explains every sequence number.
        if next_seq > first_attempted:
            self._void = (first_attempted, next_seq - first_attempted, f"write failed: {exc.strerror or exc}")
            self._next_seq = next_seq
        self._enter_read_only(exc, "writing a group")
        outcome = "unknown" if self._tail_dirty else "not_written"
        # The numbers this group was given (with any void before it): the client can hold the store to voiding them.
        numbered = {"first_sequence": first_attempted, "last_sequence": next_seq - 1} if next_seq > first_attempted else {}
        for pending, *_ in accepted:
            if not pending.future.done():
                pending.future.set_exception(
                    WriteFailed(
                        f"append was not acknowledged: {exc.strerror or exc} (outcome {outcome})",
                        errno=errno.errorcode.get(exc.errno or 0, str(exc.errno)),
                        outcome=outcome,
                        **numbered,
                    )
                )

    def _enter_read_only(self, exc: OSError, doing: str) -> None:
        name = errno.errorcode.get(exc.errno or 0, "EIO")
        reason = f"{name} while {doing}: {exc.strerror or exc}"
        self._health.last_error = reason
        self._health.raise_condition("write_error", HealthState.READ_ONLY, reason)
        self._start_probe()

    def _start_probe(self) -> None:
        if self._probe_task is None or self._probe_task.done():
            self._probe_task = asyncio.get_running_loop().create_task(self._probe_loop(), name="lighthouse-probe")

    async def _probe_loop(self) -> None:
        """While read-only, retry a small durable write; return to healthy when one succeeds."""
        loop = asyncio.get_running_loop()
        while not self._closing:
            await asyncio.sleep(self.probe_interval)
            if self._closing:
                return
            ok = await loop.run_in_executor(self._io, self._probe_write)
            if ok:
                self._health.clear_condition("write_error")
                if self.min_free_bytes:
                    self._check_free_space()
                if not self._health.has("low_disk_space"):
                    if self._wake is not None:
                        self._wake.set()  # record a pending void range now, not at the next append
                    return

    def _probe_write(self) -> bool:
        fd = self._write_fd
        if fd is None:
            return False
        size = self._segments[-1].size
        try:
            if self._tail_dirty:
                os.ftruncate(fd, size)
                os.fdatasync(fd)
                self._tail_dirty = False
            if os.pwrite(fd, bytes(_PROBE_BYTES), size) != _PROBE_BYTES:
                raise OSError(errno.ENOSPC, "probe write was short")
            os.fdatasync(fd)
            os.ftruncate(fd, size)
            os.fdatasync(fd)
            return True
        except OSError:
            try:
                os.ftruncate(fd, size)
            except OSError:
                self._tail_dirty = True
            return False

    def _check_free_space(self) -> None:
        stat = os.statvfs(self.path)
        free = stat.f_bavail * stat.f_frsize
        if self.min_free_bytes and free < self.min_free_bytes:
            if not self._health.has("low_disk_space"):
                self._health.raise_condition(
                    "low_disk_space", HealthState.READ_ONLY, f"{free} bytes free, minimum {self.min_free_bytes}"
                )
                self._start_probe()
        elif self._health.has("low_disk_space") and free >= self.min_free_bytes * 1.25:
            self._health.clear_condition("low_disk_space")
        if self.warn_free_bytes and free < self.warn_free_bytes:
            self._health.raise_condition(
                "disk_space_warning", HealthState.DEGRADED, f"{free} bytes free, warning at {self.warn_free_bytes}"
            )
        else:
            self._health.clear_condition("disk_space_warning")

    async def _flusher_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.sync_interval)
            if self._unsynced and self._write_fd is not None:
                self._unsynced = False
                try:
                    await loop.run_in_executor(self._io, self._sync_file, self._write_fd)
                except OSError as exc:
                    self._enter_read_only(exc, "syncing")

    # ------------------------------------------------------------------ reads

    def _upcast(self, event: Event) -> Event:
        return self.upcasters.upcast(event) if self.upcasters else event

    def _event_at_sequence(self, sequence: int) -> Event | None:
        row = self._index.row_of_sequence(sequence)
        if row is None:
            return None
        return self._event_at_row(row)

    def _event_at_row(self, row: int) -> Event:
        where = self._index.row(row)
        return self._fetch([where.segment], [where.offset], [where.slot])[0]

    async def get(self, key: str | int) -> Event:
        """The event with this id (str) or sequence (int); ``EventNotFound`` otherwise."""
        self._check_open()
        if isinstance(key, bool) or not isinstance(key, (int, str)):
            raise InvalidQuery("get() takes an event id (str) or a sequence (int)")
        if isinstance(key, int):
            event = self._event_at_sequence(key)
        else:
            event = self._find_by_id(key)
        if event is None:
            raise EventNotFound(f"no event {key!r}", key=key)
        return self._upcast(event)

    async def query(
        self,
        event_filter: EventFilter | None = None,
        *,
        limit: int = 1000,
        cursor: str | None = None,
        descending: bool = False,
    ) -> QueryResult:
        """One page of matching events in sequence order; ``next_cursor`` continues after it."""
        self._check_open()
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_QUERY_LIMIT:
            raise InvalidQuery(f"limit must be an integer in 1..{MAX_QUERY_LIMIT}", limit=limit)
        flt = event_filter if event_filter is not None else EventFilter()
        if not isinstance(flt, EventFilter):
            raise InvalidQuery("the filter must be an EventFilter")
        index = self._index
        start, stop = 0, len(index)
        if flt.from_sequence is not None:
            start = max(start, index.first_row_at_or_after("seq", flt.from_sequence))
        if flt.to_sequence is not None:
            stop = min(stop, index.first_row_at_or_after("seq", flt.to_sequence + 1))
        if flt.recorded_after is not None:
            start = max(start, index.first_row_at_or_after("rec_at", flt.recorded_after))
        if flt.recorded_before is not None:
            stop = min(stop, index.first_row_at_or_after("rec_at", flt.recorded_before))
        if cursor is not None:
            after = self._decode_cursor(cursor, flt, descending)
            if descending:
                stop = min(stop, index.first_row_at_or_after("seq", after))
            else:
                start = max(start, index.first_row_at_or_after("seq", after + 1))
        seqs, segs, offs, slots = index.candidate_rows(
            start,
            stop,
            type_codes=[TYPE_CODES[t.value] for t in flt.event_types] if flt.event_types else None,
            aggregate_hashes=[hash_key(a) for a in flt.aggregate_ids] if flt.aggregate_ids else None,
            source_hashes=[hash_key(a) for a in flt.source_agents] if flt.source_agents else None,
            correlation_hash=hash_key(flt.correlation_id) if flt.correlation_id else None,
            causation_hash=hash_key(flt.causation_id) if flt.causation_id else None,
            want=limit + 1,
            descending=descending,
        )
        with _collector_paused():
            fetched = self._fetch(segs[:limit], offs[:limit], slots[:limit])
        events = [self._upcast(e) for e in fetched if flt.matches(e)]  # hashes only nominate candidates
        last_seq = seqs[min(limit, len(seqs)) - 1] if seqs else None
        next_cursor = self._encode_cursor(last_seq, flt, descending) if len(seqs) > limit and last_seq else None
        return QueryResult(events, next_cursor)

    def _fetch(self, segs: list[int], offs: list[int], slots: list[int]) -> list[Event]:
        """Events at these locations, reading each run of nearby frames with one positional read."""
        out: list[Event] = []
        i, n = 0, len(segs)
        while i < n:
            segment = segs[i]
            j = i
            lo = hi = offs[i]
            while j < n and segs[j] == segment:
                # One read covers a run of nearby frames; a far jump (a sparse filter) starts a new read
                # rather than dragging megabytes of unwanted frames in between.
                if j > i and abs(offs[j] - offs[j - 1]) > _FETCH_GAP:
                    break
                new_lo, new_hi = min(lo, offs[j]), max(hi, offs[j])
                if new_hi - new_lo > _FETCH_SPAN:
                    break
                lo, hi = new_lo, new_hi
                j += 1
            span = self._reader.read_span(segment, lo, hi, name=self._segments[segment].path.name)
            wanted: dict[int, set[int]] = {}
            for off, slot in zip(offs[i:j], slots[i:j]):
                wanted.setdefault(off, set()).add(slot)
            decoded = {off: span.events(off, sorted(want)) for off, want in wanted.items()}
            for k in range(i, j):
                out.append(decoded[offs[k]][slots[k]])
            i = j
        return out

    @staticmethod
    def _encode_cursor(last_seq: int, flt: EventFilter, descending: bool) -> str:
        check = crc32c.crc32c(flt.fingerprint().encode())
        raw = msgpack.packb([1, last_seq, bool(descending), check])
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @staticmethod
    def _decode_cursor(cursor: str, flt: EventFilter, descending: bool) -> int:
        try:
            if not isinstance(cursor, str):
                raise TypeError
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            version, last_seq, desc, check = msgpack.unpackb(raw)
        except Exception:
            raise InvalidCursor("the cursor is not one this store issued") from None
        if version != 1 or not isinstance(last_seq, int) or last_seq < 0:
            raise InvalidCursor("the cursor is not one this store issued")
        if desc != bool(descending) or check != crc32c.crc32c(flt.fingerprint().encode()):
            raise InvalidCursor("the cursor belongs to a different query (filter or order changed)")
        return last_seq

    async def replay(
        self,
        from_sequence: int = 1,
        *,
        to_sequence: int | None = None,
        event_filter: EventFilter | None = None,
    ) -> AsyncIterator[Event]:
        """Every stored event from ``from_sequence`` in order, read frame by frame (constant memory)."""
        self._check_open()
        if isinstance(from_sequence, bool) or not isinstance(from_sequence, int) or from_sequence < 0:
            raise InvalidQuery("from_sequence must be a non-negative integer")
        index = self._index
        row = index.first_row_at_or_after("seq", from_sequence)
        stop = len(index)
        if to_sequence is not None:
            stop = min(stop, index.first_row_at_or_after("seq", to_sequence + 1))
        flt = event_filter if event_filter is not None and not event_filter.is_empty else None
        upcast = self.upcasters.upcast if self.upcasters else None
        reader: WindowReader | None = None
        reader_segment = -1
        for _base, cols in index.column_slices(row, stop, ("seg", "off", "slot")):
            segments, offsets, slots = cols["seg"].tolist(), cols["off"].tolist(), cols["slot"].tolist()
            i, n = 0, len(segments)
            while i < n:
                segment = segments[i]
                if segment != reader_segment:
                    reader = WindowReader(self._reader.fd(segment))
                    reader_segment = segment
                assert reader is not None
                slot = slots[i]
                header, events = reader.stream_frame(offsets[i], slot, name=self._segments[segment].path.name)
                take = min(header.count - slot, n - i)
                i += take
                for event in itertools.islice(events, take):
                    if flt is None or flt.matches(event):
                        yield upcast(event) if upcast else event
            await asyncio.sleep(0)  # between chunks, let appends and other readers run

    def subscribe(
        self,
        event_filter: EventFilter | None = None,
        *,
        from_sequence: int | None = None,
        buffer_size: int | None = None,
    ) -> Subscription:
        """Catch up from ``from_sequence`` (default: only new events), then follow live appends."""
        self._check_open()
        if from_sequence is not None and (isinstance(from_sequence, bool) or not isinstance(from_sequence, int)):
            raise InvalidQuery("from_sequence must be an integer")
        return Subscription(
            self, event_filter, from_sequence, buffer_size or self.subscriber_buffer, self._subscribers.discard
        )

    def _register_live(self, subscription: Subscription) -> None:
        self._subscribers.add(subscription)

    # ------------------------------------------------------------------ snapshots

    async def save_snapshot(self, name: str, state: Any, at_sequence: int, *, incremental: bool = False) -> Snapshot:
        """Persist a projection's state as of ``at_sequence`` (atomically; checksummed)."""
        self._check_open()
        if isinstance(at_sequence, bool) or not isinstance(at_sequence, int) or at_sequence < 0:
            raise InvalidSnapshot("at_sequence must be a non-negative integer")
        if at_sequence > self.head_sequence:
            raise InvalidSnapshot(
                f"at_sequence {at_sequence} is beyond the log head {self.head_sequence}", head=self.head_sequence
            )
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._io, lambda: self._snapshots.save(name, state, at_sequence, incremental=incremental)
        )

    async def load_snapshot(self, name: str) -> Snapshot:
        """The newest intact snapshot of ``name`` (a damaged one is skipped and reported in health)."""
        self._check_open()
        return self._snapshots.load(name)

    # ------------------------------------------------------------------ introspection

    def lost_sequences(self) -> list[tuple[int, int]]:
        out = []
        for damage in self._damage:
            if damage.lost_first is not None and damage.lost_last is not None and damage.lost_last >= damage.lost_first:
                out.append((damage.lost_first, damage.lost_last))
        return out

    def health(self) -> StoreHealth:
        details = {
            "head_sequence": self.head_sequence,
            "open": self._opened and not self._closed,
            "damaged_snapshots": list(self._snapshots.damaged),
        }
        return StoreHealth(
            state=self._health.state,
            reasons=self._health.conditions(),
            durability=self.durability,
            durable_acks=self.durability == "fsync",
            transitions=self._health.transition_count,
            recent_transitions=self._health.recent(),
            damage=[d.to_dict() for d in self._damage],
            lost_sequences=self.lost_sequences(),
            voided_sequences=_merge_ranges(
                self._voided + ([(self._void[0], self._void[0] + self._void[1] - 1)] if self._void else [])
            ),
            last_error=self._health.last_error,
            details=details,
        )

    def stats(self) -> StoreStats:
        return StoreStats(
            events=len(self._index),
            head_sequence=self.head_sequence,
            segments=len(self._segments),
            bytes_on_disk=sum(s.size for s in self._segments),
            index_bytes=self._index.nbytes(),
            appends=self._counters["appends"],
            batches=self._counters["batches"],
            groups=self._counters["groups"],
            fsyncs=self._counters["fsyncs"],
            subscribers=len(self._subscribers),
            quarantined_bytes=self._quarantined_bytes,
            torn_tail_bytes_truncated=self._torn_bytes,
            lost_sequences=self.lost_sequences(),
            open_seconds=self._open_seconds,
        )


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
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


def _write_all(fd: int, data: bytes, offset: int) -> None:
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


def _release_free_heap() -> None:
    """Give the heap that recovery's transient decoding freed back to the OS (glibc keeps it otherwise:
    about 100 bytes per recovered event of resident memory that the store no longer uses)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to do
        return
    trim(0)


def _merge_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Adjacent or overlapping inclusive ranges as one: (2, 2) and (3, 3) are (2, 3)."""
    merged: list[tuple[int, int]] = []
    for first, last in sorted(ranges):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged
