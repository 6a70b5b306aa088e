"""The id table: a stable 63-bit key -> sequence map in two flat arrays (open addressing).

It costs about 35 bytes per entry (at its 0.35-0.7 load) where a dict of Python ints costs over 100,
and its slot arrays are memoryviews: of zeroed memory, or over a mapped checkpoint.
"""

from __future__ import annotations

import mmap

import numpy as np

__all__ = ["IdTable"]

#: tables of at least this many bytes per array are anonymous mappings (see ``_zeroed``)
_MAPPED_FROM = 1 << 20
#: a sealed table's filter: bits per entry (one hash: about 6% of absent keys pass) and where its bits start
#: in a key (above those that pick a slot: tables stay far below 2**32 slots)
_FILTER_BITS_PER_ENTRY = 16
_FILTER_SHIFT = 32
#: a filtered table's filter while it takes keys: bits per slot (about 11 per entry when full, ~8% of absent
#: keys pass then; fewer below), kept as keys are added
_LIVE_FILTER_BITS_PER_SLOT = 8


class IdTable:
    """Key (a stable 63-bit hash) -> sequence, open addressing over two flat arrays (about 35 bytes per entry).

    The arrays are writable ``memoryview`` (``q`` and ``Q``): of lazily zeroed memory, or of a checkpoint's
    buffer, so loading a checkpoint copies nothing.
    """

    __slots__ = ("_keys", "_values", "_mask", "_count", "_sealed", "_filter", "_filter_bits", "_filter_mask")

    def __init__(self, capacity: int = 1024, *, filtered: bool = False) -> None:
        """``filtered``: keep a one-hash bit filter of the keys as they are added, so that ``holds_any`` probes
        only the keys it cannot rule out before the table is sealed too (the event ids' live table: a batch's
        duplicate check probed every absent id, several slots each, in Python)."""
        self._keys: memoryview
        self._values: memoryview
        self._keys, self._values = _empty_slots(capacity)
        self._mask = capacity - 1
        self._count = 0
        self._unsealed()
        if filtered:
            self._start_filter(capacity * _LIVE_FILTER_BITS_PER_SLOT)

    def _unsealed(self) -> None:
        self._sealed = False
        self._filter: bytes | bytearray | None = None
        self._filter_bits: np.ndarray | None = None
        self._filter_mask = 0

    def _start_filter(self, size: int) -> None:
        """An empty filter of ``size`` bits (a power of two), then every key already in the table marked in it."""
        self._filter = bytearray(size // 8)
        self._filter_bits = np.frombuffer(self._filter, dtype=np.uint8)
        self._filter_mask = size - 1
        keys = np.frombuffer(self._keys, dtype=np.int64)
        self._mark(keys[keys != 0])

    def _mark(self, keys: np.ndarray) -> None:
        """Set the filter's bit of each of ``keys`` (repeats included: ``bitwise_or.at`` applies each)."""
        assert self._filter_bits is not None
        at = (keys >> _FILTER_SHIFT) & self._filter_mask
        np.bitwise_or.at(self._filter_bits, at >> 3, np.left_shift(1, at & 7).astype(np.uint8))

    @staticmethod
    def capacity_for(entries: int) -> int:
        """The smallest table (a power of two, at least 1024 slots) that holds ``entries`` without growing."""
        capacity = 1024
        while (entries + 1) * 10 > capacity * 7:
            capacity *= 2
        return capacity

    @classmethod
    def from_buffers(cls, keys: memoryview, values: memoryview, count: int) -> IdTable:
        """A table over existing slot arrays (a power-of-two capacity), e.g. from a checkpoint."""
        if len(keys) != len(values) or len(keys) & (len(keys) - 1):
            raise ValueError("id table slot arrays must have the same power-of-two length")
        table = cls.__new__(cls)
        table._keys, table._values, table._mask, table._count = keys, values, len(keys) - 1, count
        table._unsealed()
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

    def has_room_for(self, count: int) -> bool:
        """True if ``count`` more entries fit without the table growing."""
        return (self._count + count) * 10 <= (self._mask + 1) * 7

    def add(self, key: int, sequence: int) -> None:
        if self._sealed:
            raise RuntimeError("a sealed id table is read-only")
        if not self.has_room_for(1):
            self._grow()
        keys, mask = self._keys, self._mask
        i = key & mask
        while keys[i]:
            i = (i + 1) & mask
        keys[i] = key
        self._values[i] = sequence
        self._count += 1
        if self._filter is not None:
            at = (key >> _FILTER_SHIFT) & self._filter_mask
            self._filter[at >> 3] |= 1 << (at & 7)

    def add_run(self, keys_to_add: list[int], first_sequence: int) -> None:
        """``add_many`` at consecutive sequences from ``first_sequence``."""
        self.add_many(np.asarray(keys_to_add, dtype=np.int64),
                      np.arange(first_sequence, first_sequence + len(keys_to_add), dtype=np.uint64))

    def add_many(self, keys_to_add: np.ndarray, values_to_add: np.ndarray) -> None:
        """``add`` each key (int64) with its value (uint64), placed with numpy in rounds: every key not yet
        placed tries its next slot, and of the keys trying one free slot the first takes it. A slot is never
        emptied, so every slot between a key's home and its place stays occupied: a valid linear-probing
        layout, which answers lookups as one-by-one adds would. In a large table every slot read is a cache
        miss, which a Python loop waits out one at a time and numpy overlaps (thousands of keys: ~0.2 us each,
        where runs of 100 placed partly in Python took 0.4-0.7 us, and up to 1.1 in the server). Each round's
        keys are counted as they are placed: an error part-way (out of memory) leaves the count true."""
        if self._sealed:
            raise RuntimeError("a sealed id table is read-only")
        count = len(keys_to_add)
        if count != len(values_to_add):
            raise ValueError("keys and values differ in length")
        while not self.has_room_for(count):
            self._grow()
        slot_keys = np.frombuffer(self._keys, dtype=np.int64)
        slot_values = np.frombuffer(self._values, dtype=np.uint64)
        waiting = np.arange(count)
        at = keys_to_add & self._mask
        while len(waiting):
            free = np.flatnonzero(slot_keys[at] == 0)
            if len(free):
                _slots, first = np.unique(at[free], return_index=True)
                won = free[first]
                slot_keys[at[won]] = keys_to_add[waiting[won]]
                slot_values[at[won]] = values_to_add[waiting[won]]
                self._count += len(won)
                left = np.ones(len(waiting), dtype=np.bool_)
                left[won] = False
                waiting, at = waiting[left], at[left]
            at = (at + 1) & self._mask
        if self._filter is not None:
            self._mark(keys_to_add)

    def seal(self) -> None:
        """Promise no more additions, and put a one-hash bit filter in front of ``holds_any`` (a filtered
        table keeps the one it has).

        A table frozen full (load 0.7) misses with about six probes per absent key: 100-150 us per batch
        of 100 ids, per frozen table, in Python (four tables before a store's first checkpoint: 518 us a
        batch, a quarter of the server's time per event). The filter (16 bits per entry) lets about 6% of
        absent keys through to the probes and answers the rest in one vectorised test."""
        self._sealed = True
        if self._filter is not None:
            return
        size = 64
        while size < self._count * _FILTER_BITS_PER_ENTRY:
            size *= 2
        self._start_filter(size)

    @property
    def sealed(self) -> bool:
        return self._sealed

    def holds_any(self, keys_to_find: list[int], wanted: np.ndarray | None = None) -> bool:
        """True if any of these keys is in the table (one loop for a whole batch). ``wanted``: the same keys
        as an int64 array, which lets a filter (a sealed or filtered table's) test them all at once."""
        if self._filter is not None:
            keys_to_find = self._past_filter(keys_to_find, wanted)
        keys, mask = self._keys, self._mask
        for key in keys_to_find:
            i = key & mask
            while keys[i]:
                if keys[i] == key:
                    return True
                i = (i + 1) & mask
        return False

    def _past_filter(self, keys_to_find: list[int], wanted: np.ndarray | None) -> list[int]:
        """The keys the filter cannot rule out (all of those present, ~6% of the absent)."""
        mask = self._filter_mask
        if wanted is None:
            marks = self._filter
            assert marks is not None
            return [key for key in keys_to_find if marks[(at := (key >> _FILTER_SHIFT) & mask) >> 3] >> (at & 7) & 1]
        bits = self._filter_bits
        assert bits is not None
        at = (wanted >> _FILTER_SHIFT) & mask
        passed = np.flatnonzero((bits[at >> 3] >> (at & 7)) & 1)
        return [keys_to_find[i] for i in passed.tolist()]

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
        """Double the capacity, re-placing every entry with numpy (a Python loop over a million slots held
        the event loop for half a second, once per doubling); a filter doubles with it."""
        old_keys = np.frombuffer(self._keys, dtype=np.int64)
        occupied = old_keys != 0
        keys, values = old_keys[occupied], np.frombuffer(self._values, dtype=np.uint64)[occupied]
        self._keys, self._values = _placed(keys, values, (self._mask + 1) * 2)
        self._mask = len(self._keys) - 1
        if self._filter is not None:
            self._start_filter(len(self._keys) * _LIVE_FILTER_BITS_PER_SLOT)

    def updated(self, keys: list[int] | np.ndarray, values: list[int] | np.ndarray) -> IdTable:
        """A copy with each of ``keys`` set to its value, added or replaced (the last of a repeated key wins; a
        key held twice in the table is kept once), in numpy: a checkpoint thread folding a million keys with
        ``put`` in a Python loop held the GIL the event loop needs."""
        old_keys, old_values = self.entries()
        all_keys = np.concatenate([np.asarray(keys, dtype=np.int64)[::-1], old_keys])  # the last put of a key wins
        all_values = np.concatenate([np.asarray(values, dtype=np.uint64)[::-1], old_values])
        _unique, first = np.unique(all_keys, return_index=True)
        capacity = max(self._mask + 1, IdTable.capacity_for(len(first)))
        table = IdTable.__new__(IdTable)
        table._keys, table._values = _placed(all_keys[first], all_values[first], capacity)
        table._mask, table._count = capacity - 1, len(first)
        table._unsealed()
        return table

    def entries(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the occupied slots' keys and values (in slot order)."""
        keys = np.frombuffer(self._keys, dtype=np.int64)
        occupied = keys != 0
        return keys[occupied], np.frombuffer(self._values, dtype=np.uint64)[occupied]

    def nbytes(self) -> int:
        return (len(self._keys) + len(self._values)) * 8 + (len(self._filter) if self._filter is not None else 0)

    @property
    def capacity(self) -> int:
        return self._mask + 1


def _empty_slots(capacity: int) -> tuple[memoryview, memoryview]:
    """Zeroed key and value slot arrays (a key of 0 marks a free slot)."""
    return _zeroed(capacity).cast("q"), _zeroed(capacity).cast("Q")


def _zeroed(slots: int) -> memoryview:
    """Zeroed memory for ``slots`` 8-byte slots. A large table is a private anonymous mapping, zeroed by the
    kernel page by page as slots are first written, so creating one costs nothing on the event loop (filling
    it there held the loop 25-90 ms per table of 2-4 million slots). Hashed keys touch every page soon, so
    no memory is saved, only the stall. ``calloc`` maps lazily only at or above glibc's mmap threshold,
    which moves up as large blocks are freed: it cannot be relied on."""
    size = slots * 8
    return memoryview(mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE) if size >= _MAPPED_FROM else bytearray(size))


def _placed(keys: np.ndarray, values: np.ndarray, capacity: int) -> tuple[memoryview, memoryview]:
    """Slot arrays of ``capacity`` (a power of two) holding these entries in a valid linear-probing layout
    (not necessarily the slots a sequence of ``add`` calls would pick), placed in vectorised rounds: each
    round every unplaced entry tries its next slot, and of the entries trying one free slot one takes it.
    A slot is never emptied, so every slot between an entry's home and its place is occupied, which is
    all a lookup needs."""
    slot_keys, slot_values = _empty_slots(capacity)
    into_keys = np.frombuffer(slot_keys, dtype=np.int64)
    into_values = np.frombuffer(slot_values, dtype=np.uint64)
    claims = np.full(capacity, -1, dtype=np.int64)
    mask = capacity - 1
    waiting = np.arange(len(keys))
    at = keys & mask
    while len(waiting):
        trying = into_keys[at] == 0
        claims[at[trying]] = waiting[trying]  # of several entries trying one slot, one claim stays
        won = trying & (claims[at] == waiting)
        into_keys[at[won]], into_values[at[won]] = keys[waiting[won]], values[waiting[won]]
        waiting, at = waiting[~won], (at[~won] + 1) & mask
    return slot_keys, slot_values
