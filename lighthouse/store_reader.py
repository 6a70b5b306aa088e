"""The store's read path: get, query (cursor pages), replay, subscriptions and snapshots.

Everything is found through the in-memory index and read from checksummed frames; nothing here
writes to the log.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
from collections.abc import AsyncIterator
from typing import Any

import crc32c
import msgpack

from lighthouse.errors import EventNotFound, InvalidCursor, InvalidQuery, InvalidSnapshot, StoreClosed
from lighthouse.index import SEGMENT_END, Located, hash_key
from lighthouse.models import MAX_BATCH_BYTES, MAX_QUERY_LIMIT, Event, EventFilter, QueryResult, Snapshot
from lighthouse.segments import WindowReader
from lighthouse.store_state import TYPE_CODES, StoreState, collector_paused
from lighthouse.subscriptions import Subscription

__all__ = ["ReadPath"]

_FETCH_SPAN = 4 << 20
_FETCH_GAP = 64 << 10
#: no frame is longer: a batch's records, its versions and stamp, and the frame header
_LARGEST_FRAME = MAX_BATCH_BYTES + 64 * 1024


class ReadPath(StoreState):
    """Reads by id, sequence, filter and stream (a mixin of ``EventStore``)."""

    def _upcast(self, event: Event) -> Event:
        return self.upcasters.upcast(event) if self.upcasters else event

    def _event_at_sequence(self, sequence: int) -> Event | None:
        row = self._index.row_of_sequence(sequence)
        if row is None:
            return None
        return self._event_at_row(row)

    def _event_at_row(self, row: int) -> Event:
        return self._fetch(self._index.locate(row))[0]

    def _find_by_id(self, event_id: str) -> Event | None:
        for seq in self._index.sequences_for_id(event_id):
            stored = self._event_at_sequence(seq)
            if stored is not None and stored.event_id == event_id:
                return stored
        return None

    def _newest_event_of(self, aggregate: str) -> Event | None:
        """The aggregate's newest event, found through the index's aggregate hashes (newest first)."""
        index = self._index
        located = index.candidate_rows(
            0, len(index), aggregate_hashes=[hash_key(aggregate)], want=len(index) or 1, descending=True
        )
        for start in range(0, len(located), 64):
            for event in self._fetch(located.part(start, start + 64)):
                if event[2] == aggregate:
                    return event
        return None

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
        start, stop = self._row_range(flt, cursor, descending)
        located = self._index.candidate_rows(
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
        with collector_paused():
            fetched = self._fetch(located.head(limit))
        # The row range and the type codes are exact; the hashed fields only nominate candidates: each is
        # confirmed on the decoded events, one field at a time.
        events = fetched
        for position, allowed in flt.field_tests():
            if position != 1:
                events = [e for e in events if e[position] in allowed]
        if self.upcasters:
            events = [self.upcasters.upcast(e) for e in events]
        seqs = located.sequences
        last_seq = seqs[min(limit, len(seqs)) - 1] if seqs else None
        next_cursor = self._encode_cursor(last_seq, flt, descending) if len(seqs) > limit and last_seq else None
        return QueryResult(events, next_cursor)

    def _row_range(self, flt: EventFilter, cursor: str | None, descending: bool) -> tuple[int, int]:
        """The index rows a query may look at: its sequence and time bounds, and where its cursor left off."""
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
        return start, stop

    def _fetch(self, where: Located) -> list[Event]:
        """The events at these locations, in the given order.

        Consecutive locations in one frame are decoded together, and a run of nearby frames of one
        segment is read with one positional read; every frame is checksummed whole before use. The
        events' versions and time come from the index (written with the frame, or from a checkpoint
        checksummed whole when it was loaded), so a few records of a large frame cost no decode of the
        frame's versions."""
        n = len(where)
        if not n:
            return []
        segs, offs, slots, roffs, ends = where.segments, where.offsets, where.slots, where.record_offsets, where.record_ends
        versions, frame_ends, recorded = where.versions, where.frame_ends, where.recorded_at
        frames = [0, *(k for k in range(1, n) if offs[k] != offs[k - 1] or segs[k] != segs[k - 1]), n]
        out: list[Event] = []
        f = 0
        while f < len(frames) - 1:
            segment = segs[frames[f]]
            lo = hi = offs[frames[f]]
            g = f + 1
            while g < len(frames) - 1 and segs[frames[g]] == segment:
                # One read covers a run of nearby frames; a far jump (a sparse filter) starts a new read
                # rather than dragging megabytes of unwanted frames in between.
                off = offs[frames[g]]
                if abs(off - offs[frames[g - 1]]) > _FETCH_GAP or max(hi, off) - min(lo, off) > _FETCH_SPAN:
                    break
                lo, hi = min(lo, off), max(hi, off)
                g += 1
            end = frame_ends[next(frames[k] for k in range(f, g) if offs[frames[k]] == hi)]
            if end == SEGMENT_END:  # its segment's newest frame: it ends where the segment's bytes do
                end = min(self._segments[segment].size, hi + _LARGEST_FRAME)
            elif not hi < end <= hi + _LARGEST_FRAME:
                end = 0  # only a hint: read the frame's start, then the frame whole once its header tells its size
            span = self._reader.read_span(segment, lo, hi, end=end, name=self._segments[segment].path.name)
            for a, b in itertools.pairwise(frames[f : g + 1]):
                held = versions[a:b]
                stamp = (recorded[a], held) if all(held) else None
                out.extend(span.events(offs[a], slots[a:b], roffs[a:b], ends[a:b], stamp))
            f = g
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
        matches = event_filter.predicate() if event_filter is not None and not event_filter.is_empty else None
        upcast = self.upcasters.upcast if self.upcasters else None
        reader: WindowReader | None = None
        reader_segment = -1
        for _base, cols in index.column_slices(row, stop, ("seg", "off", "slot"), copies=True):
            segments, offsets, slots = cols["seg"].tolist(), cols["off"].tolist(), cols["slot"].tolist()
            i, n = 0, len(segments)
            while i < n:
                if self._closing or self._closed:  # its segment files are (being) closed: never read a reused fd
                    raise StoreClosed("the store was closed during this replay")
                segment = segments[i]
                if segment != reader_segment:
                    reader = self._reader.window(segment)
                    reader_segment = segment
                assert reader is not None
                slot = slots[i]
                header, events = reader.stream_frame(offsets[i], slot, name=self._segments[segment].path.name)
                take = min(header.count - slot, n - i)
                i += take
                for event in itertools.islice(events, take):
                    if matches is None or matches(event):
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
            self,  # type: ignore[arg-type]  # always an EventStore: this is one of its mixins
            event_filter,
            from_sequence,
            buffer_size or self.subscriber_buffer,
            self._subscribers.discard,
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
