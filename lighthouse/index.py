"""The in-memory index: compact columns, not per-event Python objects.

One row per stored event, in sequence order. Rows live in fixed-size numpy chunks (plus an
``array.array`` tail that is frozen into a chunk when full), so filtering 100,000 events is a few
vectorised comparisons and an event costs tens of bytes of memory (restored from a checkpoint, the
full chunks are views of its mapping). String fields are kept as hashes; a hash match is only a
candidate, and the store confirms every candidate against the decoded event, so a collision can
cost time but never return a wrong event. Hashes are xxh3 of the UTF-8 bytes, stable across
processes, so the index can be persisted in a checkpoint. Event ids are looked up in ``EventIds``.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from xxhash import xxh3_64_intdigest

from lighthouse.errors import StoreClosed
from lighthouse.event_ids import EventIds, IdsSnapshot
from lighthouse.index_slabs import ChunkSlabs

__all__ = ["COLUMNS", "SEGMENT_END", "EventIndex", "Located", "hash_key", "id_key"]

CHUNK_ROWS = 16384

# name -> (array typecode, numpy dtype)
# Field hashes are 32-bit: a collision only costs one extra event decoded and rejected.
COLUMNS: dict[str, tuple[str, str]] = {
    "seq": ("Q", "u8"),
    "seg": ("I", "u4"),
    "off": ("I", "u4"),
    "slot": ("H", "u2"),
    #: where the event's record starts, from the frame's first byte: read without walking the frame
    "roff": ("I", "u4"),
    "rec_at": ("d", "f8"),
    "etype": ("B", "u1"),
    "agg": ("i", "i4"),
    "src": ("i", "i4"),
    "corr": ("i", "i4"),
    "caus": ("i", "i4"),
    #: the event's aggregate version (0: above 2**32 - 1, read it from the frame): a read of a few records
    #: need not decode the versions of the whole frame
    "ver": ("I", "u4"),
}
_VERSION_HELD = 0xFFFFFFFF
#: a chunk column's array object (a 1-d view: header, shape and strides) and its slot in the column's list
_CHUNK_OBJECT_BYTES = sys.getsizeof(np.zeros(1)[:1]) + 8
#: ``Located.frame_ends`` of a frame that no later frame of its segment follows in the index
SEGMENT_END = -1
_HASH_MASK = 0x7FFFFFFF


def hash_key(value: str | None) -> int:
    """A non-zero 31-bit hash of a field value (0 stands for "no value"), the same in every process."""
    if value is None:
        return 0
    return (xxh3_64_intdigest(value.encode("utf-8", "surrogatepass")) & _HASH_MASK) or 1


def id_key(event_id: str) -> int:
    """The id table's non-zero, positive 63-bit key of an event id, the same in every process."""
    return (xxh3_64_intdigest(event_id.encode("utf-8", "surrogatepass")) >> 1) or 1


def id_keys(event_ids: list[str]) -> list[int]:
    """``id_key`` of each id, in one pass: an append computes its ids' keys once, for the duplicate check
    and the id table both."""
    return [(h >> 1) or 1 for h in map(xxh3_64_intdigest, map(str.encode, event_ids))]


def _field_hashes(values: list[str]) -> list[int]:
    """``hash_key`` of each value. A frame's values repeat (one author for a whole batch, a few aggregates):
    each distinct value is hashed once when fewer than half are distinct."""
    mask = _HASH_MASK
    distinct = set(values)
    if len(distinct) * 2 > len(values):
        return [(h & mask) or 1 for h in map(xxh3_64_intdigest, map(str.encode, values))]
    table = {value: (xxh3_64_intdigest(value.encode()) & mask) or 1 for value in distinct}
    return list(map(table.__getitem__, values))


def _optional_field_hashes(values: list[str | None]) -> list[int]:
    mask = _HASH_MASK
    return [0 if v is None else (xxh3_64_intdigest(v.encode()) & mask) or 1 for v in values]


@dataclass(slots=True)
class Located:
    """Where some rows' events are, one list per field (equal lengths, in the asked order), and what the
    index knows of each that its frame would otherwise have to be decoded for."""

    sequences: list[int]
    segments: list[int]
    offsets: list[int]
    slots: list[int]
    #: where each record starts, from its frame's first byte
    record_offsets: list[int]
    #: where the next record of the frame starts; 0 for the frame's last record (it ends with the frame)
    record_ends: list[int]
    #: where the event's frame ends in its segment: ``SEGMENT_END`` for its segment's newest frame, 0 if unknown
    frame_ends: list[int]
    #: the aggregate version, 0 if the index does not hold it
    versions: list[int]
    recorded_at: list[float]

    def __len__(self) -> int:
        return len(self.sequences)

    def head(self, count: int) -> Located:
        """The first ``count`` locations."""
        return Located(*(values[:count] for values in self._fields()))

    def part(self, start: int, stop: int) -> Located:
        return Located(*(values[start:stop] for values in self._fields()))

    def _fields(self) -> tuple[list[Any], ...]:
        return (self.sequences, self.segments, self.offsets, self.slots, self.record_offsets, self.record_ends,
                self.frame_ends, self.versions, self.recorded_at)


class EventIndex:
    """Columns of every stored event plus an id table; answers "which rows may match"."""

    def __init__(self) -> None:
        self._chunks: dict[str, list[np.ndarray]] = {name: [] for name in COLUMNS}
        self._tail: dict[str, array] = _empty_tail()
        self._slabs = _column_slabs()
        self._ids = EventIds()
        self._rows = 0
        self._released = False

    def __len__(self) -> int:
        return self._rows

    def add(
        self,
        sequence: int,
        segment: int,
        offset: int,
        slot: int,
        record_offset: int,
        recorded_at: float,
        type_code: int,
        event_id: str,
        aggregate_id: str,
        source_agent: str,
        correlation_id: str | None,
        causation_id: str | None,
        version: int,
        key: int | None = None,
    ) -> None:
        """Index one event; ``key``: its id's ``id_key`` when the caller has it already."""
        tail = self._tail
        tail["seq"].append(sequence)
        tail["seg"].append(segment)
        tail["off"].append(offset)
        tail["slot"].append(slot)
        tail["roff"].append(record_offset)
        tail["rec_at"].append(recorded_at)
        tail["etype"].append(type_code)
        tail["agg"].append(hash_key(aggregate_id))
        tail["src"].append(hash_key(source_agent))
        tail["corr"].append(hash_key(correlation_id))
        tail["caus"].append(hash_key(causation_id))
        tail["ver"].append(version if version <= _VERSION_HELD else 0)
        self._ids.add(id_key(event_id) if key is None else key, sequence)
        self._rows += 1
        if len(tail["seq"]) == CHUNK_ROWS:
            self._freeze_tail()

    def _freeze_tail(self) -> None:
        """The full tail becomes a chunk, copied out of the C heap (see ``lighthouse.index_slabs``); onto the
        heap when no mapping can be made (an address-space limit refuses a slab's 13 MB long before the
        chunk's 0.8 MB), so that the rows stay where reads look for them."""
        try:
            chunk = self._slabs.store(self._tail)
        except OSError:
            chunk = {name: np.array(self._tail[name], dtype=dtype) for name, (_code, dtype) in COLUMNS.items()}
        for name, values in chunk.items():
            self._chunks[name].append(values)
        self._tail = _empty_tail()

    def add_frame(
        self,
        first_sequence: int,
        segment: int,
        offset: int,
        record_offsets: list[int],
        recorded_at: float,
        type_codes: list[int],
        event_ids: list[str],
        aggregate_ids: list[str],
        source_agents: list[str],
        correlation_ids: list[str | None],
        causation_ids: list[str | None],
        versions: list[int],
        keys: list[int] | None = None,
    ) -> None:
        """Index every event of one frame at once (column-wise: far fewer Python calls than ``add``). ``keys``:
        the ids' ``id_keys`` when the caller has them already."""
        n = len(event_ids)
        if max(versions, default=0) > _VERSION_HELD:
            versions = [v if v <= _VERSION_HELD else 0 for v in versions]
        agg = _field_hashes(aggregate_ids)
        src = _field_hashes(source_agents)
        corr = _optional_field_hashes(correlation_ids)
        caus = _optional_field_hashes(causation_ids)
        self._ids.add_run(id_keys(event_ids) if keys is None else keys, first_sequence)
        pos = 0
        while pos < n:
            tail = self._tail
            take = min(CHUNK_ROWS - len(tail["seq"]), n - pos)
            end = pos + take
            tail["seq"].extend(range(first_sequence + pos, first_sequence + end))
            tail["seg"].extend([segment] * take)
            tail["off"].extend([offset] * take)
            tail["slot"].extend(range(pos, end))
            tail["roff"].extend(record_offsets[pos:end])
            tail["rec_at"].extend([recorded_at] * take)
            tail["etype"].extend(type_codes[pos:end])
            tail["agg"].extend(agg[pos:end])
            tail["src"].extend(src[pos:end])
            tail["corr"].extend(corr[pos:end])
            tail["caus"].extend(caus[pos:end])
            tail["ver"].extend(versions[pos:end])
            self._rows += take
            pos = end
            if len(tail["seq"]) == CHUNK_ROWS:
                self._freeze_tail()

    # --- point lookups -------------------------------------------------------------------------

    def _value(self, column: str, row: int) -> int | float:
        chunk, pos = divmod(row, CHUNK_ROWS)
        chunks = self._chunks[column]
        if chunk < len(chunks):
            return chunks[chunk][pos].item()
        return self._tail[column][pos]

    def locate(self, row: int) -> Located:
        """Where the event of ``row`` is (its frame's end is left unknown: finding it costs more than it saves)."""
        segment, offset = int(self._value("seg", row)), int(self._value("off", row))
        return Located(
            [int(self._value("seq", row))],
            [segment],
            [offset],
            [int(self._value("slot", row))],
            [int(self._value("roff", row))],
            [self._next_record_at(row + 1, segment, offset)],
            [0],
            [int(self._value("ver", row))],
            [float(self._value("rec_at", row))],
        )

    def _next_record_at(self, row: int, segment: int, offset: int) -> int:
        """Where the record of ``row`` starts if it is in the frame at (``segment``, ``offset``), else 0.

        A frame's events are consecutive rows, so the row after an event's row is either the next
        record of its frame (whose start is where the event's record ends) or the next frame's first."""
        if row < self._rows and self._value("seg", row) == segment and self._value("off", row) == offset:
            return int(self._value("roff", row))
        return 0

    def sequence_at(self, row: int) -> int:
        return int(self._value("seq", row))

    def recorded_at(self, row: int) -> float:
        return float(self._value("rec_at", row))

    def row_of_sequence(self, sequence: int) -> int | None:
        row = self.first_row_at_or_after("seq", sequence)
        if row < self._rows and self.sequence_at(row) == sequence:
            return row
        return None

    def first_row_at_or_after(self, column: str, value: float) -> int:
        """Binary search on a non-decreasing column (``seq`` or ``rec_at``)."""
        lo, hi = 0, self._rows
        while lo < hi:
            mid = (lo + hi) // 2
            if self._value(column, mid) < value:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def sequences_for_id(self, event_id: str) -> list[int]:
        return self._ids.candidates(id_key(event_id))

    def may_hold_any(self, keys: list[int]) -> bool:
        """False if no id with one of these ``id_keys`` is stored; True means "look closer" (a hash match is
        only a candidate)."""
        return self._ids.holds_any(keys)

    # --- persistence (index checkpoints) ------------------------------------------------------

    def export(self) -> tuple[dict[str, list[np.ndarray]], EventIds]:
        """Every column as a list of arrays covering all rows in order, and the id lookup (not copied).

        Frozen chunks never change, and the tail arrays are copied, so the column lists stay valid
        while appends continue; the id lookup does change: a checkpoint takes ``snapshot_ids()``.
        """
        columns = {
            name: [*self._chunks[name], np.array(self._tail[name], dtype=dtype)]
            for name, (_code, dtype) in COLUMNS.items()
        }
        return columns, self._ids

    def snapshot_ids(self, interval: int = 0) -> IdsSnapshot:
        """The ids as of now, for a checkpoint (the live id table is frozen, not copied; the next one is sized
        for up to ``interval`` ids: see ``EventIds.snapshot``)."""
        return self._ids.snapshot(interval)

    def adopt_ids(self, snapshot: IdsSnapshot) -> None:
        """A checkpoint merged ``snapshot``'s ids into sorted arrays: use them (and drop what they replace)."""
        self._ids.adopt(snapshot)

    def release(self) -> None:
        """Drop every column chunk and the ids (they may be views of a mapped checkpoint that is about
        to be closed); the row count stays, reads raise ``StoreClosed``."""
        self._released = True
        self._chunks = {name: [] for name in COLUMNS}
        self._slabs = _column_slabs()
        self._ids.release()

    @classmethod
    def restore(cls, columns: dict[str, np.ndarray], ids: EventIds) -> EventIndex:
        """An index over whole columns (e.g. read from a checkpoint) and an id table.

        Full chunks stay views of the given arrays (no copy); the partial last chunk becomes the
        writable tail.
        """
        index = cls()
        rows = len(columns["seq"])
        if any(len(columns[name]) != rows for name in COLUMNS):
            raise ValueError("index columns have different lengths")
        full = rows - rows % CHUNK_ROWS
        for name, (code, _dtype) in COLUMNS.items():
            column = columns[name]
            index._chunks[name] = [column[start : start + CHUNK_ROWS] for start in range(0, full, CHUNK_ROWS)]
            index._tail[name] = array(code, column[full:].tobytes())
        index._ids = ids
        index._rows = rows
        return index

    # --- scans ---------------------------------------------------------------------------------

    def column_slices(
        self, start: int, stop: int, names: Sequence[str], *, descending: bool = False, copies: bool = False
    ) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """Yield ``(first_row, {name: ndarray})`` covering rows ``start..stop`` chunk by chunk.

        Rows never move (a full tail becomes a chunk at the same row numbers), so this stays
        correct while appends continue between two steps of the iteration. A caller that awaits
        between steps asks for ``copies``: a view held across an await would keep a mapped
        checkpoint from being closed with the store.
        """
        if stop <= start:
            return
        if self._released:
            raise StoreClosed("the store is closed")
        chunks = range(start // CHUNK_ROWS, (stop - 1) // CHUNK_ROWS + 1)
        for chunk in reversed(chunks) if descending else chunks:
            if self._released:
                raise StoreClosed("the store was closed during this scan")
            base = chunk * CHUNK_ROWS
            lo = max(start - base, 0)
            hi = min(stop - base, CHUNK_ROWS)
            if chunk < len(self._chunks["seq"]):
                cols = {name: self._chunks[name][chunk][lo:hi] for name in names}
                if copies:
                    cols = {name: view.copy() for name, view in cols.items()}
            else:
                cols = {name: np.array(self._tail[name][lo:hi], dtype=COLUMNS[name][1]) for name in names}
            yield base + lo, cols

    def candidate_rows(
        self,
        start: int,
        stop: int,
        *,
        type_codes: Sequence[int] | None = None,
        aggregate_hashes: Sequence[int] | None = None,
        source_hashes: Sequence[int] | None = None,
        correlation_hash: int | None = None,
        causation_hash: int | None = None,
        want: int,
        descending: bool = False,
    ) -> Located:
        """Where up to ``want`` rows in ``[start, stop)`` whose hashed fields match are, in the asked order.

        Knowing where each record ends lets a reader decode exactly its bytes, whatever else the frame holds;
        knowing where its frame ends lets it read the frame with one ``pread``."""
        located = ("seq", "seg", "off", "slot", "roff")
        names = list(located)
        if type_codes is not None:
            names.append("etype")
        if aggregate_hashes is not None:
            names.append("agg")
        if source_hashes is not None:
            names.append("src")
        if correlation_hash is not None:
            names.append("corr")
        if causation_hash is not None:
            names.append("caus")
        found = 0
        parts: list[dict[str, np.ndarray]] = []
        for base, cols in self.column_slices(start, stop, names, descending=descending):
            mask = None
            if type_codes is not None:
                mask = _and(mask, _one_of(cols["etype"], type_codes))
            if aggregate_hashes is not None:
                mask = _and(mask, _one_of(cols["agg"], aggregate_hashes))
            if source_hashes is not None:
                mask = _and(mask, _one_of(cols["src"], source_hashes))
            if correlation_hash is not None:
                mask = _and(mask, cols["corr"] == correlation_hash)
            if causation_hash is not None:
                mask = _and(mask, cols["caus"] == causation_hash)
            rows = np.arange(len(cols["seq"])) if mask is None else np.flatnonzero(mask)
            if descending:
                rows = rows[::-1]
            rows = rows[: want - found]
            picked = {name: cols[name][rows] for name in located}
            picked["ver"], picked["rec_at"] = self._gather(base, rows, "ver"), self._gather(base, rows, "rec_at")
            picked["end"] = self._record_ends(base, cols, rows)
            picked["frame_end"] = self._frame_ends(base, cols, rows)
            parts.append(picked)
            found += len(rows)
            if found >= want:
                break
        names = (*located, "end", "frame_end", "ver", "rec_at")
        if not parts:
            return Located(*([] for _ in names))
        return Located(*(np.concatenate([p[name] for p in parts]).tolist() for name in names))

    def _record_ends(self, base: int, cols: dict[str, np.ndarray], rows: np.ndarray) -> np.ndarray:
        """``Located.record_ends`` of these rows of a slice starting at row ``base`` (vectorised but for a row
        whose successor lies past the slice)."""
        seg, off, roff = cols["seg"], cols["off"], cols["roff"]
        ends = np.zeros(len(rows), dtype="u4")
        inside = rows + 1 < len(seg)
        this = rows[inside]
        after = this + 1
        ends[inside] = np.where((seg[after] == seg[this]) & (off[after] == off[this]), roff[after], 0)
        for k in np.flatnonzero(~inside).tolist():
            last = int(rows[k])
            ends[k] = self._next_record_at(base + last + 1, int(seg[last]), int(off[last]))
        return ends

    def _gather(self, base: int, rows: np.ndarray, name: str) -> np.ndarray:
        """Column ``name`` at rows ``base + rows`` of one chunk (only the picked rows: the tail is not copied whole)."""
        chunk, first = divmod(base, CHUNK_ROWS)
        chunks = self._chunks[name]
        if chunk < len(chunks):
            return chunks[chunk][first + rows]
        tail = self._tail[name]
        return np.array([tail[i] for i in (first + rows).tolist()], dtype=COLUMNS[name][1])

    def _frame_ends(self, base: int, cols: dict[str, np.ndarray], rows: np.ndarray) -> np.ndarray:
        """Where the frames of these rows of a slice starting at row ``base`` end: the next frame's offset when
        it follows in the same segment, ``SEGMENT_END`` when no frame follows in that segment, 0 when the index
        cannot tell cheaply. Only a read-size hint: a reader takes each frame's size from its checksummed header."""
        seg, off = cols["seg"], cols["off"]
        ends = np.zeros(len(rows), dtype="i8")
        if not len(rows):
            return ends
        if seg[0] == seg[-1]:  # one segment: offsets do not decrease, the next frame is a binary search away
            nxt = np.searchsorted(off, off[rows], side="right")
            inside = nxt < len(off)
            ends[inside] = off[nxt[inside]]
        else:
            starts = np.flatnonzero((seg[1:] != seg[:-1]) | (off[1:] != off[:-1])) + 1  # each later frame's first row
            following = np.searchsorted(starts, rows, side="right")
            inside = following < len(starts)
            nxt = starts[following[inside]]
            ends[inside] = np.where(seg[nxt] == seg[rows[inside]], off[nxt].astype("i8"), SEGMENT_END)
        if inside.all():
            return ends
        beyond = base + len(seg)  # the slice's last frame ends at the next slice's first row, unless it goes on
        last = len(seg) - 1
        if beyond >= self._rows or self._value("seg", beyond) != seg[last]:
            ends[~inside] = SEGMENT_END
        elif self._value("off", beyond) != off[last]:
            ends[~inside] = self._value("off", beyond)
        return ends

    def nbytes(self) -> int:
        """Bytes held by the columns and the id table (what "index memory per event" means), the chunks' array
        objects included: 1,440 bytes per 16,384 rows, which a soak's leak verdict on RSS minus this count
        read as a leak of 0.09 bytes per event."""
        total = self._ids.nbytes() + self._slabs.padding_bytes()
        for name in COLUMNS:
            chunks = self._chunks[name]
            total += sum(chunk.nbytes for chunk in chunks) + len(chunks) * _CHUNK_OBJECT_BYTES
            total += self._tail[name].buffer_info()[1] * self._tail[name].itemsize
        return total


def _empty_tail() -> dict[str, array]:
    return {name: array(code) for name, (code, _dtype) in COLUMNS.items()}


def _column_slabs() -> ChunkSlabs:
    return ChunkSlabs({name: dtype for name, (_code, dtype) in COLUMNS.items()}, CHUNK_ROWS)


def _one_of(column: np.ndarray, values: Sequence[int]) -> np.ndarray:
    """Where ``column`` holds one of ``values`` (one comparison for one value: ``isin`` sorts and merges)."""
    if len(values) == 1:
        return column == values[0]
    return np.isin(column, np.asarray(values, dtype=column.dtype))


def _and(mask: np.ndarray | None, other: np.ndarray) -> np.ndarray:
    return other if mask is None else (mask & other)
