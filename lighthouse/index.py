"""The in-memory index: compact columns, not per-event Python objects.

One row per stored event, in sequence order. Rows live in fixed-size numpy chunks (plus an
``array.array`` tail that is frozen into a chunk when full), so filtering 100,000 events is a few
vectorised comparisons and an event costs tens of bytes of memory. String fields are kept as
hashes; a hash match is only a candidate, and the store confirms every candidate against the
decoded event, so a collision can cost time but never return a wrong event. Hashes are xxh3 of
the UTF-8 bytes, stable across processes, so the index can be persisted in a checkpoint.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from xxhash import xxh3_64_intdigest

__all__ = ["COLUMNS", "EventIndex", "IdTable", "Row", "hash_key", "id_key"]

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
}
_HASH_MASK = 0x7FFFFFFF


def hash_key(value: str | None) -> int:
    """A non-zero 31-bit hash of a field value (0 stands for "no value"), the same in every process."""
    if value is None:
        return 0
    return (xxh3_64_intdigest(value.encode("utf-8", "surrogatepass")) & _HASH_MASK) or 1


def id_key(event_id: str) -> int:
    """The id table's non-zero, positive 63-bit key of an event id, the same in every process."""
    return (xxh3_64_intdigest(event_id.encode("utf-8", "surrogatepass")) >> 1) or 1


def _field_hashes(values: list[str]) -> list[int]:
    mask = _HASH_MASK
    return [(h & mask) or 1 for h in map(xxh3_64_intdigest, map(str.encode, values))]


def _optional_field_hashes(values: list[str | None]) -> list[int]:
    mask = _HASH_MASK
    return [0 if v is None else (xxh3_64_intdigest(v.encode()) & mask) or 1 for v in values]


@dataclass(frozen=True, slots=True)
class Row:
    sequence: int
    segment: int
    offset: int
    slot: int
    record_offset: int


class IdTable:
    """Key (a stable 63-bit hash) -> sequence, open addressing over two flat arrays (about 35 bytes per entry).

    The arrays may be ``array.array`` or writable ``memoryview`` (``q`` and ``Q``) over a checkpoint's
    buffer, so loading a checkpoint copies nothing.
    """

    __slots__ = ("_keys", "_values", "_mask", "_count")

    def __init__(self, capacity: int = 1024) -> None:
        self._keys: array[int] | memoryview = array("q", bytes(8 * capacity))
        self._values: array[int] | memoryview = array("Q", bytes(8 * capacity))
        self._mask = capacity - 1
        self._count = 0

    @classmethod
    def from_buffers(cls, keys: memoryview, values: memoryview, count: int) -> IdTable:
        """A table over existing slot arrays (a power-of-two capacity), e.g. from a checkpoint."""
        if len(keys) != len(values) or len(keys) & (len(keys) - 1):
            raise ValueError("id table slot arrays must have the same power-of-two length")
        table = cls.__new__(cls)
        table._keys, table._values, table._mask, table._count = keys, values, len(keys) - 1, count
        return table

    def copy(self) -> IdTable:
        table = IdTable.__new__(IdTable)
        table._keys, table._values = array("q", bytes(self._keys)), array("Q", bytes(self._values))
        table._mask, table._count = self._mask, self._count
        return table

    def buffers(self) -> tuple[bytes, bytes, int]:
        """Copies of the slot arrays and the entry count (what a checkpoint stores)."""
        return bytes(self._keys), bytes(self._values), self._count

    def put(self, key: int, value: int) -> None:
        """Set the value of ``key`` (its first slot), adding it if absent."""
        keys, mask = self._keys, self._mask
        i = key & mask
        while keys[i]:
            if keys[i] == key:
                self._values[i] = value
                return
            i = (i + 1) & mask
        self.add(key, value)

    def __len__(self) -> int:
        return self._count

    def add(self, key: int, sequence: int) -> None:
        if (self._count + 1) * 10 > (self._mask + 1) * 7:
            self._grow()
        keys, mask = self._keys, self._mask
        i = key & mask
        while keys[i]:
            i = (i + 1) & mask
        keys[i] = key
        self._values[i] = sequence
        self._count += 1

    def add_run(self, keys_to_add: list[int], first_sequence: int) -> None:
        """``add`` for consecutive sequences, with the growth check and lookups hoisted out of the loop."""
        while (self._count + len(keys_to_add)) * 10 > (self._mask + 1) * 7:
            self._grow()
        keys, values, mask = self._keys, self._values, self._mask
        sequence = first_sequence
        for key in keys_to_add:
            i = key & mask
            while keys[i]:
                i = (i + 1) & mask
            keys[i] = key
            values[i] = sequence
            sequence += 1
        self._count += len(keys_to_add)

    def holds_any(self, keys_to_find: list[int]) -> bool:
        """True if any of these keys is in the table (one loop for a whole batch)."""
        keys, mask = self._keys, self._mask
        for key in keys_to_find:
            i = key & mask
            while keys[i]:
                if keys[i] == key:
                    return True
                i = (i + 1) & mask
        return False

    def candidates(self, key: int) -> list[int]:
        """Sequences whose id hashes to ``key`` (normally zero or one)."""
        keys, mask = self._keys, self._mask
        i = key & mask
        out = []
        while keys[i]:
            if keys[i] == key:
                out.append(self._values[i])
            i = (i + 1) & mask
        return out

    def _grow(self) -> None:
        old_keys, old_values = self._keys, self._values
        capacity = (self._mask + 1) * 2
        self._keys = array("q", bytes(8 * capacity))
        self._values = array("Q", bytes(8 * capacity))
        self._mask = mask = capacity - 1
        keys, values = self._keys, self._values
        for key, value in zip(old_keys, old_values):
            if key:
                i = key & mask
                while keys[i]:
                    i = (i + 1) & mask
                keys[i] = key
                values[i] = value

    def nbytes(self) -> int:
        return (len(self._keys) + len(self._values)) * 8

    @property
    def capacity(self) -> int:
        return self._mask + 1


class EventIndex:
    """Columns of every stored event plus an id table; answers "which rows may match"."""

    def __init__(self) -> None:
        self._chunks: dict[str, list[np.ndarray]] = {name: [] for name in COLUMNS}
        self._tail: dict[str, array] = {name: array(code) for name, (code, _dtype) in COLUMNS.items()}
        self._ids = IdTable()
        self._rows = 0

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
    ) -> None:
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
        self._ids.add(id_key(event_id), sequence)
        self._rows += 1
        if len(tail["seq"]) == CHUNK_ROWS:
            for name, (code, dtype) in COLUMNS.items():
                self._chunks[name].append(np.array(tail[name], dtype=dtype))
                tail[name] = array(code)

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
    ) -> None:
        """Index every event of one frame at once (column-wise: far fewer Python calls than ``add``)."""
        n = len(event_ids)
        agg = _field_hashes(aggregate_ids)
        src = _field_hashes(source_agents)
        corr = _optional_field_hashes(correlation_ids)
        caus = _optional_field_hashes(causation_ids)
        self._ids.add_run([(h >> 1) or 1 for h in map(xxh3_64_intdigest, map(str.encode, event_ids))], first_sequence)
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
            self._rows += take
            pos = end
            if len(tail["seq"]) == CHUNK_ROWS:
                for name, (code, dtype) in COLUMNS.items():
                    self._chunks[name].append(np.array(tail[name], dtype=dtype))
                    tail[name] = array(code)

    # --- point lookups -------------------------------------------------------------------------

    def _value(self, column: str, row: int) -> int | float:
        chunk, pos = divmod(row, CHUNK_ROWS)
        chunks = self._chunks[column]
        if chunk < len(chunks):
            return chunks[chunk][pos].item()
        return self._tail[column][pos]

    def row(self, row: int) -> Row:
        return Row(
            int(self._value("seq", row)),
            int(self._value("seg", row)),
            int(self._value("off", row)),
            int(self._value("slot", row)),
            int(self._value("roff", row)),
        )

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

    def may_hold_any(self, event_ids: list[str]) -> bool:
        """False if none of these ids is stored; True means "look closer" (a hash match is only a candidate)."""
        return self._ids.holds_any([(h >> 1) or 1 for h in map(xxh3_64_intdigest, map(str.encode, event_ids))])

    # --- persistence (index checkpoints) ------------------------------------------------------

    def export(self) -> tuple[dict[str, list[np.ndarray]], IdTable]:
        """Every column as a list of arrays covering all rows in order, and the id table (not copied).

        Frozen chunks never change, and the tail arrays are copied, so the column lists stay valid
        while appends continue; the id table does change: copy it (``buffers()``) before yielding.
        """
        columns = {
            name: [*self._chunks[name], np.array(self._tail[name], dtype=dtype)]
            for name, (_code, dtype) in COLUMNS.items()
        }
        return columns, self._ids

    @classmethod
    def restore(cls, columns: dict[str, np.ndarray], ids: IdTable) -> EventIndex:
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
        self, start: int, stop: int, names: Sequence[str], *, descending: bool = False
    ) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """Yield ``(first_row, {name: ndarray})`` covering rows ``start..stop`` chunk by chunk.

        Rows never move (a full tail becomes a chunk at the same row numbers), so this stays
        correct while appends continue between two steps of the iteration.
        """
        if stop <= start:
            return
        chunks = range(start // CHUNK_ROWS, (stop - 1) // CHUNK_ROWS + 1)
        for chunk in reversed(chunks) if descending else chunks:
            base = chunk * CHUNK_ROWS
            lo = max(start - base, 0)
            hi = min(stop - base, CHUNK_ROWS)
            if chunk < len(self._chunks["seq"]):
                cols = {name: self._chunks[name][chunk][lo:hi] for name in names}
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
    ) -> tuple[list[int], list[int], list[int], list[int], list[int]]:
        """Locations (sequences, segments, offsets, slots, record offsets) of up to ``want`` rows in
        ``[start, stop)`` whose hashed fields match, in the asked order."""
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
        for _base, cols in self.column_slices(start, stop, names, descending=descending):
            mask = None
            if type_codes is not None:
                mask = _and(mask, np.isin(cols["etype"], np.asarray(type_codes, dtype="u1")))
            if aggregate_hashes is not None:
                mask = _and(mask, np.isin(cols["agg"], np.asarray(aggregate_hashes, dtype="i4")))
            if source_hashes is not None:
                mask = _and(mask, np.isin(cols["src"], np.asarray(source_hashes, dtype="i4")))
            if correlation_hash is not None:
                mask = _and(mask, cols["corr"] == correlation_hash)
            if causation_hash is not None:
                mask = _and(mask, cols["caus"] == causation_hash)
            if mask is None:
                picked = {name: cols[name] for name in located}
            else:
                rows = np.flatnonzero(mask)
                picked = {name: cols[name][rows] for name in located}
            if descending:
                picked = {name: arr[::-1] for name, arr in picked.items()}
            picked = {name: arr[: want - found] for name, arr in picked.items()}
            parts.append(picked)
            found += len(picked["seq"])
            if found >= want:
                break
        if not parts:
            return [], [], [], [], []
        return tuple(  # type: ignore[return-value]
            np.concatenate([p[name] for p in parts]).tolist() for name in located
        )

    def nbytes(self) -> int:
        """Bytes held by the columns and the id table (what "index memory per event" means)."""
        total = self._ids.nbytes()
        for name in COLUMNS:
            total += sum(chunk.nbytes for chunk in self._chunks[name])
            total += self._tail[name].buffer_info()[1] * self._tail[name].itemsize
        return total


def _and(mask: np.ndarray | None, other: np.ndarray) -> np.ndarray:
    return other if mask is None else (mask & other)
