"""The store's write path: validation, group commit, rotation, voids.

Appends are encoded (and read back) by the caller, then queue up. One writer task drains the
queue: it settles retries and version checks, encodes each accepted batch as one frame and the
single-event appends between them together as another, writes the whole group with one ``write``
and one ``fdatasync`` on the I/O thread, and only then publishes the group to the index and
acknowledges it. While appends come one at a time, a lone append skips the queue and is committed in
its caller's task (same write, sync and publish). Sequences handed to a write that failed are never
reused: they become a void range recorded by the next successful write.

Seams: ``_before_write`` and ``_before_rotation`` run on the I/O thread just before a group's bytes
are written and before a new segment is created (writer fencing hooks in there); ``_sync_file``,
``_sync_directory``, ``_sync_after_write`` and ``_write_durably`` are the hooks the chaos suite's
deliberately broken variants override.
"""

from __future__ import annotations

import asyncio
import errno
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import count, repeat
from operator import itemgetter
from typing import Any

import msgpack
import msgspec

from lighthouse.errors import (
    BatchTooLarge,
    ConcurrencyConflict,
    DuplicateEvent,
    EventTooLarge,
    InvalidEvent,
    LighthouseError,
    ResourceExhausted,
    StoreReadOnly,
    WriteFailed,
)
from lighthouse.framing import encode_events_frame_with_offsets, encode_segment_header, encode_void_frame
from lighthouse.health import HealthState
from lighthouse.index import id_key, id_keys
from lighthouse.models import CLIENT_FIELD_COUNT, MAX_BATCH_BYTES, MAX_BATCH_EVENTS, MAX_EVENT_BYTES, Event
from lighthouse.segments import segment_name
from lighthouse.snapshots import fsync_directory
from lighthouse.store_state import Pending, Segment, StoreState, collector_paused, write_all

__all__ = ["WritePath"]

_new = tuple.__new__
_ID_OF = itemgetter(0)  # an event's id (``Event`` is a tuple)
#: A lone append (one waiting appender, one event) is written and synced on the event loop itself while
#: writes take at most this long: the loop stalls for one short sync, instead of the append paying two
#: thread switches, which on a busy machine cost more than the sync. A slower disk goes back to the thread.
INLINE_WRITE_BUDGET_S = 0.002
#: How far ahead of its writes the newest segment's blocks are allocated. An append into blocks the file
#: already has syncs without a size change, which on ext4 is about 30% cheaper (125 us against 181 us for
#: a 250-byte write and fdatasync, measured here); small, so that a full disk is noticed within a few
#: hundred appends and a crash leaves at most this much unused space for recovery to cut.
PREALLOCATE_BYTES = 64 * 1024
#: an append that is an identical retry of one earlier in the same group: (origin, slot) per event
_Origins = list[tuple[Pending, int]]


@dataclass(slots=True)
class _Accepted:
    """Appends written as one frame: a batch on its own, or a group's single-event appends together."""

    pendings: list[Pending]
    first: int
    offset: int
    versions: list[int]
    record_offsets: list[int]
    events: list[Event]
    keys: list[int]  # the events' ``id_keys``


@dataclass(slots=True)
class _Plan:
    """What one group turned into: the frames to write and whom they acknowledge."""

    frames: list[bytes] = field(default_factory=list)
    accepted: list[_Accepted] = field(default_factory=list)
    followers: list[tuple[Pending, _Origins]] = field(default_factory=list)
    #: aggregate -> (its new version, the sequence of its newest event)
    versions: dict[str, tuple[int, int]] = field(default_factory=dict)
    next_seq: int = 0
    recorded_at: float = 0.0


def _write_frame_into(plan: _Plan, accepted: _Accepted, records: list[bytes], offset: int) -> int:
    """Encode ``accepted``'s appends as one frame of ``plan`` at ``offset`` (nothing if it holds none); the
    offset after it."""
    if not accepted.pendings:
        return offset
    frame, accepted.record_offsets = encode_events_frame_with_offsets(
        accepted.first, plan.recorded_at, accepted.versions, records
    )
    accepted.offset = offset
    plan.accepted.append(accepted)
    plan.frames.append(frame)
    return offset + len(frame)


@dataclass(slots=True)
class _SharedFrame:
    """A group's single-event appends gathering into one frame, within a batch's limits."""

    accepted: _Accepted
    records: list[bytes] = field(default_factory=list)
    size: int = 0

    @classmethod
    def starting_at(cls, first: int) -> _SharedFrame:
        return cls(_Accepted([], first, 0, [], [], [], []))

    def has_room(self, record: bytes) -> bool:
        return self.size + len(record) <= MAX_BATCH_BYTES and len(self.records) < MAX_BATCH_EVENTS

    def add(self, pending: Pending, version: int) -> None:
        accepted, record = self.accepted, pending.records[0]
        accepted.pendings.append(pending)
        accepted.versions.append(version)
        accepted.events.append(pending.events[0])
        accepted.keys.append(pending.keys[0])
        self.records.append(record)
        self.size += len(record)

    def write_into(self, plan: _Plan, offset: int) -> int:
        return _write_frame_into(plan, self.accepted, self.records, offset)


#: MessagePack for the values a request body's decoder produced (``from_wire``): the same bytes as
#: ``msgpack.Packer(use_bin_type=True)`` writes for them, at about half its cost (a batch of 100 events
#: of 200-byte payloads: 44 -> 24 us). For other values (dataclasses, sets, datetimes...) it would write
#: what the packer refuses, so appends from Python keep the packer.
_encode_wire_record = msgspec.msgpack.Encoder().encode
_WIRE_REFUSALS = (TypeError, ValueError, OverflowError, RecursionError, msgspec.EncodeError)


def _wire_record(fields: tuple[Any, ...]) -> bytes | None:
    """``fields`` packed by ``_encode_wire_record``, or None where it refuses them: the packer then says why
    (or packs what msgspec cannot, e.g. a MessagePack body's extension types)."""
    try:
        return _encode_wire_record(fields)
    except _WIRE_REFUSALS:
        return None


def _read_back(packed: bytes) -> None:
    """Never write what could not be read back: unpack ``packed`` as the readers do and drop the result.

    What can fail is the structure and a map key that comes back unhashable (a tuple key is packed as an
    array and read as a list); strings are left as bytes (``raw``), since this packer only writes valid
    UTF-8 (it refuses lone surrogates) and decoding them proved nothing but cost a third of the read-back.
    The collector is paused: every container built here is garbage at once, and collections triggered by
    building them were half of the read-back's time inside the server (py-spy, soak load)."""
    with collector_paused():
        msgpack.unpackb(packed, strict_map_key=False, raw=True)


class WritePath(StoreState):
    """Append, append_batch and the writer task behind them (a mixin of ``EventStore``)."""

    #: a lone append is synced on the event loop while the latest write took at most this long (a
    #: subclass whose sync hook waits for something on the loop sets it below zero: always the thread)
    inline_write_budget_s: float = INLINE_WRITE_BUDGET_S

    # ------------------------------------------------------------------ validation (caller's task)

    @staticmethod
    def _normalise(event: Any) -> Event:
        if isinstance(event, Event):
            return event
        if isinstance(event, Mapping):
            return Event.from_dict(event)
        raise InvalidEvent(f"expected an Event, got {type(event).__name__}")

    def _encode(self, event: Event, *, from_wire: bool = False) -> bytes:
        """The event's record, refused with the reason if it cannot be written (or read back, unless
        ``from_wire``: see ``append_batch``)."""
        fields = event[:CLIENT_FIELD_COUNT]  # as client_record() packs (see _encode_batch)
        try:
            record = _wire_record(fields) if from_wire else None
            if record is None:
                record = self._packer.pack(fields)
                if not from_wire:
                    _read_back(record)
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

    def _encode_batch(self, events: list[Event], *, from_wire: bool = False) -> list[bytes]:
        """Every event's record, validated as ``_encode`` does but in bulk: one pack per event and one
        read-back of the whole batch (none ``from_wire``, which packs with ``_encode_wire_record``); any
        failure re-encodes one by one to raise the event's own error."""
        pack = _encode_wire_record if from_wire else self._packer.pack
        try:  # the tuple's first fields pack as client_record() does (an EventType packs as its value), cheaper
            records = [pack(event[:CLIENT_FIELD_COUNT]) for event in events]
            if not from_wire:
                _read_back(self._packer.pack_array_header(len(records)) + b"".join(records))
        except MemoryError:
            raise ResourceExhausted("out of memory while encoding the batch") from None
        except (*_WIRE_REFUSALS, msgpack.ExtraData, msgpack.StackError):
            return [self._encode(event, from_wire=from_wire) for event in events]
        if max(map(len, records)) > MAX_EVENT_BYTES:
            return [self._encode(event, from_wire=from_wire) for event in events]
        return records

    def _check_writable(self) -> None:
        self._check_open()
        self._fence.check_known()  # a writer known to be superseded answers every append with WriterFenced
        if self._health.state in (HealthState.READ_ONLY, HealthState.FAILED):
            reason = self._health.reason_for(HealthState.READ_ONLY) or "store failed"
            raise StoreReadOnly(f"the store is read-only: {reason}", reason=reason)

    async def append(self, event: Event, *, expected_version: int | None = None, from_wire: bool = False) -> Event:
        """Append one event; returns the stored copy once it is durable. ``from_wire``: see ``append_batch``."""
        self._check_writable()
        event = self._normalise(event)
        record = self._encode(event, from_wire=from_wire)
        expected = None
        if expected_version is not None:
            if isinstance(expected_version, bool) or not isinstance(expected_version, int) or expected_version < 0:
                raise InvalidEvent("expected_version must be a non-negative integer")
            expected = {event.aggregate_id: expected_version}
        if self._yielding_lone:
            self._lone_appender = False  # another append came in while a lone one yielded: they overlap, group them
        elif self._lone_appender and self._may_commit_here():
            future = asyncio.get_running_loop().create_future()
            pending = Pending([event], [record], expected, future, [id_key(event[0])])
            self._commit_here(pending)
            self._yielding_lone += 1
            try:
                await asyncio.sleep(0)  # a suspension point, as the queue was: other tasks get their turn
            finally:
                self._yielding_lone -= 1
            stored = pending.future.result()  # the append's own error, raised here, if it failed
            self._counters["appends"] += 1
            return stored[0]
        stored = await self._submit([event], [record], expected, [id_key(event[0])])
        self._counters["appends"] += 1
        return stored[0]

    async def append_batch(
        self, events: Sequence[Event], *, expected_versions: Mapping[str, int] | None = None, from_wire: bool = False
    ) -> list[Event]:
        """Append 1..1000 events atomically (one frame: all survive a crash or none do).

        ``from_wire``: the caller vouches that the events' data and metadata are what a JSON decoder, or a
        MessagePack decoder that refuses other map keys, produced: every map key a string (or bytes). Such
        records always read back, so the read-back, whose one catch is a container used as a map key
        (packed as an array, unhashable when read), is skipped: ``lighthouse serve`` passes it for request
        bodies, where the read-back was 8.5% of the event loop's busy time at 10,000 events/s. They are
        packed by msgspec, which writes the packer's bytes for such values at half its cost, and converts
        what the packer would refuse (a set, a datetime): the flag is for decoded bodies only."""
        self._check_writable()
        if isinstance(events, (str, bytes, Mapping)) or not isinstance(events, Sequence):
            raise InvalidEvent("a batch must be a list of events")
        if not 1 <= len(events) <= MAX_BATCH_EVENTS:
            raise BatchTooLarge(
                f"a batch holds 1..{MAX_BATCH_EVENTS} events, got {len(events)}", count=len(events)
            )
        normalise = self._normalise
        normalised = [e if type(e) is Event else normalise(e) for e in events]
        records = self._encode_batch(normalised, from_wire=from_wire)
        total = sum(map(len, records))
        if total > MAX_BATCH_BYTES:
            raise BatchTooLarge(f"batch encodes to {total} bytes; the limit is {MAX_BATCH_BYTES}", size=total)
        ids = [e[0] for e in normalised]
        if len(set(ids)) != len(ids):
            raise InvalidEvent("a batch contains the same event_id twice")
        if expected_versions is not None:
            if not isinstance(expected_versions, Mapping) or not all(
                isinstance(k, str) and not isinstance(v, bool) and isinstance(v, int) and v >= 0
                for k, v in expected_versions.items()
            ):
                raise InvalidEvent("expected_versions must map aggregate ids to non-negative integers")
        stored = await self._submit(normalised, records, expected_versions, id_keys(ids))
        self._counters["batches"] += 1
        return stored

    async def _submit(
        self, events: list[Event], records: list[bytes], expected: Mapping[str, int] | None, keys: list[int]
    ) -> list[Event]:
        future: asyncio.Future[list[Event]] = asyncio.get_running_loop().create_future()
        self._pending.append(Pending(events, records, expected, future, keys))
        assert self._wake is not None
        self._wake.set()
        return await future

    # ------------------------------------------------------------------ the writer task

    async def _writer_loop(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            group, self._pending = self._pending, []
            if group:
                self._lone_appender = len(group) == 1
            flush_void = self._void is not None and self._health.state not in (
                HealthState.READ_ONLY,
                HealthState.FAILED,
            )
            if not group and not flush_void:
                if self._closing:
                    return
                continue
            self._committing = True
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
            finally:
                self._committing = False
            if self._pending or self._closing:
                self._wake.set()

    async def _commit(self, group: list[Pending]) -> None:
        """Write one group durably, then publish and acknowledge it (or fail every append in it)."""
        if not self._admit(group) or not await self._make_room(group):
            return
        segment = self._segments[-1]
        plan = self._plan(group, segment.size)
        if not plan.frames:
            self._settle_followers(plan.followers)
            return
        data = b"".join(plan.frames)
        first_attempted = self._void[0] if self._void else self._next_seq
        try:
            if self._may_write_inline(group):
                self._timed_write(segment.size, data)
            else:
                await asyncio.get_running_loop().run_in_executor(self._io, self._timed_write, segment.size, data)
        except OSError as exc:
            self._after_failed_write(exc, first_attempted, plan.next_seq, plan.accepted)
            self._settle_followers(plan.followers)
            return
        self._publish(plan, segment, len(data))

    def _may_commit_here(self) -> bool:
        """A lone appender's append may skip the queue and be committed in its caller's task when the writer
        task is idle (nothing queued or being written, no void range to record, no rotation due) and the
        append would be written on the loop anyway (``_may_write_inline``): the same write and sync, minus
        the hop to the writer task and back. Nothing in ``_commit_here`` awaits, so no other append
        interleaves. Only while appends come one at a time (``append`` tracks that): concurrent appenders
        must keep sharing one sync per group, not take one each."""
        return (not self._pending and not self._committing and self._void is None and not self._closing
                and not self._wake.is_set()  # type: ignore[union-attr]  # set once the store is open
                and self._segments[-1].size < self.segment_bytes
                and self._may_write_inline_one())

    def _commit_here(self, pending: Pending) -> None:
        """``_commit`` for one append that ``_may_commit_here`` let through, without an await: its outcome is
        left in ``pending.future``."""
        group = [pending]
        if not self._admit(group):
            return
        segment = self._segments[-1]
        plan = self._plan(group, segment.size)
        if not plan.frames:
            return  # an identical retry of a stored append: the future holds the stored copies
        data = plan.frames[0]
        try:
            self._timed_write(segment.size, data)
        except OSError as exc:
            self._after_failed_write(exc, self._next_seq, plan.next_seq, plan.accepted)
            return
        self._publish(plan, segment, len(data))

    def _may_write_inline(self, group: list[Pending]) -> bool:
        """A lone append under ``fsync`` durability while writes are quick: written and synced on the loop (one
        sync's stall, no thread hop). Never under ``batch``, whose flusher syncs the same file on the I/O thread;
        never while a health probe may be writing at the tail on the I/O thread; never for the first write after
        open or after a slow one (a stalled disk must stall the I/O thread, not the loop)."""
        return len(group) == 1 and len(group[0].events) == 1 and self._may_write_inline_one()

    def _may_write_inline_one(self) -> bool:
        return (self.durability == "fsync"
                and (self._probe_task is None or self._probe_task.done())
                and self._health.state is HealthState.HEALTHY
                and self._last_write_seconds <= self.inline_write_budget_s)

    def _admit(self, group: list[Pending]) -> bool:
        """Refuse the whole group while read-only (or short of the minimum free space)."""
        if self._health.state in (HealthState.READ_ONLY, HealthState.FAILED) or self._closed:
            reason = self._health.reason_for(HealthState.READ_ONLY) or "store failed"
            for pending in group:
                pending.future.set_exception(StoreReadOnly(f"the store is read-only: {reason}", reason=reason))
            return False
        if self.min_free_bytes or self.warn_free_bytes:
            self._check_free_space()
            if self._health.has("low_disk_space"):
                for pending in group:
                    pending.future.set_exception(
                        StoreReadOnly("the store is read-only: free disk space below the minimum")
                    )
                return False
        return True

    async def _make_room(self, group: list[Pending]) -> bool:
        """Rotate to a new segment when the current one is full; on failure, fail the group."""
        if self._segments[-1].size < self.segment_bytes:
            return True
        first = self._void[0] if self._void else self._next_seq
        try:
            await asyncio.get_running_loop().run_in_executor(self._io, self._rotate, first)
        except OSError as exc:
            self._enter_read_only(exc, "rotating to a new segment")
            for pending in group:
                pending.future.set_exception(
                    WriteFailed(f"could not start a new segment: {exc.strerror}", errno=exc.errno, outcome="not_written")
                )
            return False
        return True

    def _plan(self, group: list[Pending], offset: int) -> _Plan:
        """Settle retries and version checks, and encode the accepted appends as frames from ``offset``: a
        batch as its own frame, the single-event appends in between together as one (one header, one
        checksum and one index insert for many appenders; each append is still all or nothing)."""
        plan = _Plan(next_seq=self._next_seq, recorded_at=max(time.time(), self._last_recorded_at))
        if self._void is not None:
            plan.frames.append(encode_void_frame(*self._void))
            offset += len(plan.frames[-1])
        group_ids: dict[str, tuple[bytes, Pending, int]] = {}
        last = group[-1] if group else None
        shared = _SharedFrame.starting_at(plan.next_seq)
        # one lookup of the whole group's ids answers the common case (none stored) for every append in it, and
        # when no id repeats in the group (the common case too) no append has to look for an earlier one in it
        keys = [key for pending in group for key in pending.keys]
        may_be_stored = self._index.may_hold_any(keys)
        repeats = len(set(keys)) != len(keys)
        for pending in group:
            events = pending.events
            plain = len(events) == 1 and pending.expected is None and not may_be_stored and events[0][0] not in group_ids
            if not plain and not self._accepts(pending, group_ids, plan, may_be_stored):
                continue  # settled here: a retry, a follower of one in this group, a conflict
            if len(events) > 1 or not shared.has_room(pending.records[0]):
                offset = shared.write_into(plan, offset)
                shared = _SharedFrame.starting_at(plan.next_seq)
            versions = self._assign_versions(events, plan)
            if pending is not last and repeats:  # only a later append of this group looks its ids up
                group_ids.update(zip(map(_ID_OF, events), zip(pending.records, repeat(pending), count())))
            if len(events) > 1:
                batch = _Accepted([pending], plan.next_seq, 0, versions, [], events, pending.keys)
                offset = _write_frame_into(plan, batch, pending.records, offset)
                plan.next_seq += len(events)
                shared = _SharedFrame.starting_at(plan.next_seq)
            else:
                shared.add(pending, versions[0])
                plan.next_seq += 1
        shared.write_into(plan, offset)
        return plan

    def _accepts(
        self, pending: Pending, group_ids: dict[str, tuple[bytes, Pending, int]], plan: _Plan, may_be_stored: bool
    ) -> bool:
        """True if ``pending`` is to be written; otherwise it is settled here (refused, answered with the stored
        copies of an identical retry, or made a follower of an identical append earlier in this group)."""
        try:
            origins = self._same_group_origins(pending, group_ids)
            stored_copies = None if origins is not None or not may_be_stored else self._already_stored(pending)
        except LighthouseError as exc:
            pending.future.set_exception(exc)
            return False
        if origins is not None:
            plan.followers.append((pending, origins))
            return False
        if stored_copies is not None:
            pending.future.set_result(stored_copies)
            return False
        conflict = self._version_conflict(pending, plan.versions)
        if conflict is not None:
            pending.future.set_exception(conflict)
            return False
        return True

    def _assign_versions(self, events: list[Event], plan: _Plan) -> list[int]:
        """Each event's aggregate version (its aggregate's newest, in this group or stored, plus one)."""
        versions = []
        local, stored_versions = plan.versions, self._versions
        sequence = plan.next_seq
        for event in events:
            aggregate = event[2]
            hit = local.get(aggregate)
            version = (hit[0] if hit is not None else stored_versions.get(aggregate, 0)) + 1
            local[aggregate] = (version, sequence)
            versions.append(version)
            sequence += 1
        return versions

    def _version_conflict(self, pending: Pending, local: dict[str, tuple[int, int]]) -> ConcurrencyConflict | None:
        for aggregate, expected in (pending.expected or {}).items():
            hit = local.get(aggregate)
            current = hit[0] if hit is not None else self._versions.get(aggregate, 0)
            if current != expected:
                return ConcurrencyConflict(
                    f"aggregate {aggregate} is at version {current}, expected {expected}",
                    aggregate_id=aggregate,
                    expected=expected,
                    actual=current,
                )
        return None

    def _publish(self, plan: _Plan, segment: Segment, written: int) -> None:
        """The group is durable: move the head, publish to the index, acknowledge, deliver to subscribers."""
        self._counters["groups"] += 1
        if self._void is not None:
            self._voided.append((self._void[0], self._void[0] + self._void[1] - 1))
            self._void = None
        segment.size += written
        last = plan.frames[-1]
        self._last_frame = (segment.size - len(last), int.from_bytes(last[8:12], "little"))
        self._next_seq = plan.next_seq
        recorded_at = self._last_recorded_at = plan.recorded_at
        self._versions.update(plan.versions)
        published: list[Event] = []
        for accepted in plan.accepted:
            first, versions = accepted.first, accepted.versions
            self._index_events(
                first, segment.number, accepted.offset, accepted.record_offsets, recorded_at, accepted.events, versions,
                accepted.keys,
            )
            stored = [
                _new(Event, event[:CLIENT_FIELD_COUNT] + (sequence, recorded_at, version))
                for event, sequence, version in zip(accepted.events, range(first, first + len(versions)), versions)
            ]
            published.extend(stored)
            if len(accepted.pendings) == 1:
                if not accepted.pendings[0].future.done():
                    accepted.pendings[0].future.set_result(stored)
                continue
            for slot, pending in enumerate(accepted.pendings):  # single-event appends sharing a frame
                if not pending.future.done():
                    pending.future.set_result(stored[slot : slot + 1])
        self._settle_followers(plan.followers)
        if self._subscribers:
            if self.upcasters:
                published = [self.upcasters.upcast(e) for e in published]
            for sub in list(self._subscribers):
                sub.offer(published)
        self._maybe_checkpoint()

    # ------------------------------------------------------------------ retries

    @staticmethod
    def _same_group_origins(pending: Pending, group_ids: dict[str, tuple[bytes, Pending, int]]) -> _Origins | None:
        """An identical retry of an append already in this group shares its outcome; other content with
        the same id is a conflict."""
        if group_ids.keys().isdisjoint(map(_ID_OF, pending.events)):
            return None
        in_group = [group_ids.get(event[0]) for event in pending.events]
        if all(hit is not None and hit[0] == record for hit, record in zip(in_group, pending.records)):
            return [(hit[1], hit[2]) for hit in in_group if hit is not None]
        raise DuplicateEvent("an event of this append is already being appended with other content")

    def _already_stored(self, pending: Pending) -> list[Event] | None:
        """An append whose ids are all stored with the same content is a retry: it gets the stored copies."""
        if not self._index.may_hold_any(pending.keys):
            return None  # the common case, answered in bulk from the id table
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

    @staticmethod
    def _settle_followers(followers: list[tuple[Pending, _Origins]]) -> None:
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

    # ------------------------------------------------------------------ on the I/O thread

    def _before_write(self) -> None:
        """Runs on the I/O thread before a group's bytes are written: never at offsets another writer owns."""
        self._fence.check()

    def _before_rotation(self) -> None:
        """Runs on the I/O thread before a new segment is created by rotation."""
        self._fence.check()

    def _timed_write(self, offset: int, data: bytes) -> None:
        started = time.perf_counter_ns()
        try:
            self._write_durably(offset, data)
        finally:
            elapsed = time.perf_counter_ns() - started
            self._write_ns += elapsed
            self._last_write_seconds = elapsed / 1e9

    def _write_durably(self, offset: int, data: bytes) -> None:
        """Runs on the I/O thread (or on the event loop for a lone append, see ``INLINE_WRITE_BUDGET_S``): write all of ``data`` at ``offset`` and sync, or leave no trace of it."""
        self._before_write()
        fd = self._write_fd
        assert fd is not None
        end = offset + len(data)
        if end > self._allocated_end:
            self._reserve(fd, offset, end)
        try:
            write_all(fd, data, offset)
            self._sync_after_write(fd)
            self._fence.check()  # claimed by another writer during the write: do not acknowledge
        except OSError:
            try:
                self._allocated_end = offset
                os.ftruncate(fd, offset)
                os.fdatasync(fd)
                self._tail_dirty = False
            except OSError:
                self._tail_dirty = True
            raise

    def _reserve(self, fd: int, offset: int, end: int) -> None:
        """Allocate the segment's blocks from ``offset`` to ``PREALLOCATE_BYTES`` past ``end`` (never past the
        segment's nominal size, so a full segment is rotated away without unused space): the appends that
        follow write into blocks the file already has. Recovery cuts what a crash leaves unused (an all-zero
        tail), and ``close`` cuts it too, so a closed store's files end at their last frame."""
        target = min(end + PREALLOCATE_BYTES, self.segment_bytes)
        if target > end:
            try:
                os.posix_fallocate(fd, offset, target - offset)
            except OSError:
                pass  # no room, or not supported here: the write grows the file as it would without this
        self._allocated_end = max(end, os.fstat(fd).st_size)

    def _release_reserve(self) -> bool:
        """Cut the newest segment's unused allocated space (on close; never on a file another writer owns).
        True if the file was cut (its size and modification time changed)."""
        fd, size = self._write_fd, self._segments[-1].size if self._segments else 0
        if fd is None or self._allocated_end <= size:
            return False
        try:
            self._fence.check()
            os.ftruncate(fd, size)
            os.fdatasync(fd)
            self._allocated_end = size
        except (OSError, LighthouseError):
            return False  # superseded, or the cut failed: the next open cuts it instead (an all-zero tail)
        return True

    def _sync_after_write(self, fd: int) -> None:
        if self.durability == "fsync":
            self._sync_file(fd)
        else:
            self._unsynced = True

    # Hooks kept separate so that the chaos suite's deliberately broken variants can override them.
    def _sync_file(self, fd: int, *, full: bool = False) -> None:
        if full:
            os.fsync(fd)
        else:
            os.fdatasync(fd)
        self._counters["fsyncs"] += 1

    def _sync_directory(self) -> None:
        fsync_directory(self.path)

    def _rotate(self, first_seq: int) -> None:
        """Runs on the I/O thread: sync the full segment, then switch to a fresh, published one."""
        self._before_rotation()
        old_fd = self._write_fd
        assert old_fd is not None
        if self._unsynced:
            self._sync_file(old_fd)
            self._unsynced = False
        _segment, self._write_fd = self._create_segment(first_seq)
        self._allocated_end = 0  # nothing allocated ahead yet: the first write reserves
        self._last_frame = None
        os.close(old_fd)

    def _create_segment(self, first_seq: int) -> tuple[Segment, int]:
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
            write_all(write_fd, header, 0)
            self._sync_file(write_fd, full=True)
            self._sync_directory()
            read_fd = os.open(path, os.O_RDONLY)
            opened.append(read_fd)
        except BaseException:
            for fd in opened:
                os.close(fd)
            path.unlink(missing_ok=True)
            raise
        segment = Segment(len(self._segments), first_seq, path, len(header), first_seq)
        self._segments.append(segment)
        self._reader.add_segment(segment.number, read_fd)
        return segment, write_fd

    def _after_failed_write(self, exc: OSError, first_attempted: int, next_seq: int, accepted: list[_Accepted]) -> None:
        # Sequences handed to a failed write are never reused: they become a void range that the
        # next successful write records explicitly, so the log explains every sequence number.
        if next_seq > first_attempted:
            self._void = (first_attempted, next_seq - first_attempted, f"write failed: {exc.strerror or exc}")
            self._next_seq = next_seq
        self._enter_read_only(exc, "writing a group")
        outcome = "unknown" if self._tail_dirty else "not_written"
        # The numbers this group was given (with any void before it): the client can hold the store to voiding them.
        numbered = {"first_sequence": first_attempted, "last_sequence": next_seq - 1} if next_seq > first_attempted else {}
        for pending in (pending for item in accepted for pending in item.pendings):
            if not pending.future.done():
                pending.future.set_exception(
                    WriteFailed(
                        f"append was not acknowledged: {exc.strerror or exc} (outcome {outcome})",
                        errno=errno.errorcode.get(exc.errno or 0, str(exc.errno)),
                        outcome=outcome,
                        **numbered,
                    )
                )

    async def _flusher_loop(self) -> None:
        """``durability="batch"``: sync what was written every ``sync_interval`` seconds."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.sync_interval)
            if self._unsynced and self._write_fd is not None:
                try:
                    await loop.run_in_executor(self._io, self._sync_unsynced)
                except OSError as exc:
                    self._enter_read_only(exc, "syncing")

    def _sync_unsynced(self) -> None:
        """Runs on the I/O thread, after any rotation queued before it: sync the segment written now (a
        descriptor read earlier on the loop may have been closed by that rotation)."""
        fd = self._write_fd
        if self._unsynced and fd is not None:
            self._unsynced = False
            self._sync_file(fd)
