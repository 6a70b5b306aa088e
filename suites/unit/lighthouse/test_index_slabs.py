"""Full index chunks are copied into private anonymous mappings (checked in /proc/self/maps), several to a
mapping, exactly as their columns held them; and the index built on them answers as before and counts
their bytes."""

from __future__ import annotations

import mmap
import platform
from array import array
from pathlib import Path

import numpy as np
import pytest

from lighthouse.index import CHUNK_ROWS, COLUMNS, EventIndex
from lighthouse.index_slabs import ChunkSlabs

DTYPES = {"seq": "u8", "flag": "u1", "off": "u4", "slot": "u2"}
CODES = {"seq": "Q", "flag": "B", "off": "I", "slot": "H"}
ROWS = 1000


def _chunk(seed: int) -> dict[str, array]:
    rng = np.random.default_rng(seed)
    return {name: array(CODES[name], rng.integers(0, np.iinfo(DTYPES[name]).max, ROWS, dtype=DTYPES[name]).tobytes())
            for name in DTYPES}


def _mapping_of(address: int) -> list[str]:
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split()
        low, high = (int(x, 16) for x in fields[0].split("-"))
        if low <= address < high:
            return fields
    raise AssertionError(f"{address:#x} is not mapped")


def test_a_stored_chunk_holds_its_columns_values_read_only_and_aligned() -> None:
    slabs = ChunkSlabs(DTYPES, ROWS)
    source = _chunk(1)
    stored = slabs.store(source)
    assert list(stored) == list(DTYPES)
    for name, values in stored.items():
        assert values.dtype == np.dtype(DTYPES[name])
        assert values.tolist() == source[name].tolist()
        assert values.ctypes.data % values.itemsize == 0
        assert not values.flags.writeable
    source["seq"][0] ^= 1  # a copy: the tail it came from is reused
    assert stored["seq"][0] != source["seq"][0]
    assert slabs.chunk_bytes % mmap.PAGESIZE == 0 and slabs.chunk_bytes >= ROWS * (8 + 1 + 4 + 2)
    assert slabs.nbytes() == slabs.chunk_bytes


@pytest.mark.skipif(platform.system() != "Linux", reason="reads /proc/self/maps")
def test_chunks_live_in_private_anonymous_mappings_several_to_one() -> None:
    slabs = ChunkSlabs(DTYPES, ROWS, chunks_per_slab=3)
    chunks = [slabs.store(_chunk(seed)) for seed in range(7)]
    mappings = [_mapping_of(chunk["seq"].ctypes.data) for chunk in chunks]
    for fields in mappings:
        assert fields[1] == "rw-p", fields  # private: the process's own anonymous memory, not shared memory
        assert len(fields) == 5, fields  # no file, not [heap]
    # the kernel may merge neighbouring mappings in /proc/self/maps: the arrays' own base is the mapping
    assert all(isinstance(chunk[name].base.obj, mmap.mmap) for chunk in chunks for name in DTYPES)
    holders = [id(chunk["seq"].base.obj) for chunk in chunks]
    assert holders[0] == holders[1] == holders[2] != holders[3] == holders[4] == holders[5] != holders[6]
    assert holders[0] != holders[6]
    assert slabs.nbytes() == 7 * slabs.chunk_bytes
    assert [chunk["flag"].tolist() for chunk in chunks] == [_chunk(seed)["flag"].tolist() for seed in range(7)]


def test_a_chunk_of_other_columns_or_lengths_is_refused() -> None:
    slabs = ChunkSlabs(DTYPES, ROWS)
    with pytest.raises(ValueError, match="columns"):
        slabs.store({name: values for name, values in _chunk(1).items() if name != "slot"})
    short = _chunk(1)
    short["off"].pop()
    with pytest.raises(ValueError, match="rows"):
        slabs.store(short)
    assert slabs.nbytes() == 0
    with pytest.raises(ValueError):
        ChunkSlabs(DTYPES, 0)


def _add(index: EventIndex, sequence: int) -> None:
    index.add(sequence, sequence // 5000, sequence * 7 % 2**32, 0, 12, 1.5 + sequence, sequence % 9,
              f"id-{sequence}", f"agg-{sequence % 13}", "agent", None, None, sequence)


def test_the_index_reads_across_stored_chunks_and_counts_their_bytes() -> None:
    index = EventIndex()
    rows = 2 * CHUNK_ROWS + 5
    for sequence in range(1, rows + 1):
        _add(index, sequence)
    assert [index.sequence_at(row) for row in (0, CHUNK_ROWS - 1, CHUNK_ROWS, 2 * CHUNK_ROWS, rows - 1)] == [
        1, CHUNK_ROWS, CHUNK_ROWS + 1, 2 * CHUNK_ROWS + 1, rows]
    assert index.recorded_at(CHUNK_ROWS + 3) == 1.5 + CHUNK_ROWS + 4
    slabs_bytes = ChunkSlabs({name: dtype for name, (_code, dtype) in COLUMNS.items()}, CHUNK_ROWS).chunk_bytes
    row_bytes = sum(np.dtype(dtype).itemsize for _code, dtype in COLUMNS.values())
    columns_and_tail = index.nbytes() - index._ids.nbytes()
    assert columns_and_tail == 2 * slabs_bytes + 5 * row_bytes

    columns, ids = index.export()
    restored = EventIndex.restore({name: np.concatenate(parts) for name, parts in columns.items()}, ids)
    assert restored.nbytes() == index.nbytes()
    for sequence in range(rows + 1, rows + CHUNK_ROWS + 1):
        _add(restored, sequence)
    assert restored.sequence_at(rows + CHUNK_ROWS - 1) == rows + CHUNK_ROWS
    assert restored.nbytes() - restored._ids.nbytes() == 3 * slabs_bytes + 5 * row_bytes
