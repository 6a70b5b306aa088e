"""Full index chunks are copied into private anonymous mappings (checked in /proc/self/maps), several to a
mapping, exactly as their columns held them; the index built on them answers as before and counts their
pages, and freezes onto the heap when an address-space limit refuses a mapping."""

from __future__ import annotations

import errno
import json
import mmap
import platform
import subprocess
import sys
import tracemalloc
from array import array
from pathlib import Path

import numpy as np
import pytest

from lighthouse.index import _CHUNK_OBJECT_BYTES, CHUNK_ROWS, COLUMNS, EventIndex, _column_slabs
from lighthouse.index_slabs import ChunkSlabs

DTYPES = {"seq": "u8", "flag": "u1", "off": "u4", "slot": "u2"}
CODES = {"seq": "Q", "flag": "B", "off": "I", "slot": "H"}
ROWS = 1000


def _chunk(seed: int) -> dict[str, array]:
    rng = np.random.default_rng(seed)
    return {name: array(CODES[name], rng.integers(0, np.iinfo(DTYPES[name]).max, ROWS, dtype=DTYPES[name]).tobytes())
            for name in DTYPES}


def _holder(values: np.ndarray) -> object:
    """What finally holds an array's memory: the object under the buffer its chain of views ends in."""
    base = values.base
    while isinstance(base, np.ndarray):
        base = base.base
    assert isinstance(base, memoryview), base
    return base.obj


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
    assert slabs.padding_bytes() == slabs.chunk_bytes - ROWS * (8 + 1 + 4 + 2)


@pytest.mark.skipif(platform.system() != "Linux", reason="reads /proc/self/maps")
def test_chunks_live_in_private_anonymous_mappings_several_to_one() -> None:
    slabs = ChunkSlabs(DTYPES, ROWS, chunks_per_slab=3)
    chunks = [slabs.store(_chunk(seed)) for seed in range(7)]
    mappings = [_mapping_of(chunk["seq"].ctypes.data) for chunk in chunks]
    for fields in mappings:
        assert fields[1] == "rw-p", fields  # private: the process's own anonymous memory, not shared memory
        assert len(fields) == 5, fields  # no file, not [heap]
    # the kernel may merge neighbouring mappings in /proc/self/maps: the arrays' own base is the mapping
    assert all(isinstance(_holder(chunk[name]), mmap.mmap) for chunk in chunks for name in DTYPES)
    holders = [id(_holder(chunk["seq"])) for chunk in chunks]
    assert holders[0] == holders[1] == holders[2] != holders[3] == holders[4] == holders[5] != holders[6]
    assert holders[0] != holders[6]
    assert slabs.padding_bytes() == 7 * (slabs.chunk_bytes - ROWS * (8 + 1 + 4 + 2))
    assert [chunk["flag"].tolist() for chunk in chunks] == [_chunk(seed)["flag"].tolist() for seed in range(7)]


def test_a_chunk_of_other_columns_or_lengths_is_refused() -> None:
    slabs = ChunkSlabs(DTYPES, ROWS)
    with pytest.raises(ValueError, match="columns"):
        slabs.store({name: values for name, values in _chunk(1).items() if name != "slot"})
    short = _chunk(1)
    short["off"].pop()
    with pytest.raises(ValueError, match="rows"):
        slabs.store(short)
    assert slabs.padding_bytes() == 0
    with pytest.raises(ValueError):
        ChunkSlabs(DTYPES, 0)


def test_a_stored_chunk_keeps_no_more_python_memory_than_the_index_counts_for_it() -> None:
    """Its columns are plain views of the slab's one array (a view of the mapping each would add a buffer
    object of its own, ~300 bytes per column): what a chunk keeps allocated, held in per-column lists as the
    index holds it, is the count per column (a soak's leak verdict reads anything uncounted as a leak)."""
    slabs = ChunkSlabs(DTYPES, ROWS, chunks_per_slab=1000)
    source = _chunk(1)
    lists: dict[str, list[np.ndarray]] = {name: [] for name in DTYPES}
    slabs.store(source)  # the mapping exists before counting starts
    tracing = tracemalloc.is_tracing()  # already on (-X tracemalloc): left on
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(200):
            for name, values in slabs.store(source).items():
                lists[name].append(values)
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        if not tracing:
            tracemalloc.stop()
    assert abs(kept / (200 * len(DTYPES)) - _CHUNK_OBJECT_BYTES) <= 16, kept / (200 * len(DTYPES))


def _add(index: EventIndex, sequence: int) -> None:
    index.add(sequence, sequence // 5000, sequence * 7 % 2**32, 0, 12, 1.5 + sequence, sequence % 9,
              f"id-{sequence}", f"agg-{sequence % 13}", "agent", None, None, sequence)


def _add_frame(index: EventIndex, first: int, count: int) -> None:
    index.add_frame(first, 3, first * 11 % 2**32, list(range(count)), 2.5 + first, [first % 9] * count,
                    [f"id-{first + i}" for i in range(count)], [f"agg-{i % 13}" for i in range(count)],
                    ["agent"] * count, [None] * count, [None] * count, list(range(first, first + count)))


ROW_BYTES = sum(np.dtype(dtype).itemsize for _code, dtype in COLUMNS.values())
CHUNK_BYTES = _column_slabs().chunk_bytes


def _columns_bytes(index: EventIndex) -> int:
    return index.nbytes() - index._ids.nbytes()


def test_the_index_keeps_full_chunks_in_slabs_reads_across_them_and_counts_their_pages() -> None:
    index = EventIndex()
    for sequence in range(1, CHUNK_ROWS + 1):
        _add(index, sequence)
    _add_frame(index, CHUNK_ROWS + 1, CHUNK_ROWS + 5)  # one frame across the next chunk boundary
    rows = 2 * CHUNK_ROWS + 5
    for name in COLUMNS:
        assert len(index._chunks[name]) == 2
        for chunk in index._chunks[name]:
            assert isinstance(_holder(chunk), mmap.mmap) and not chunk.flags.writeable
    assert [index.sequence_at(row) for row in (0, CHUNK_ROWS - 1, CHUNK_ROWS, 2 * CHUNK_ROWS, rows - 1)] == [
        1, CHUNK_ROWS, CHUNK_ROWS + 1, 2 * CHUNK_ROWS + 1, rows]
    assert index.recorded_at(CHUNK_ROWS - 1) == 1.5 + CHUNK_ROWS
    assert index.recorded_at(2 * CHUNK_ROWS + 1) == 2.5 + CHUNK_ROWS + 1
    assert index.sequences_for_id(f"id-{2 * CHUNK_ROWS}") == [2 * CHUNK_ROWS]
    objects = len(COLUMNS) * _CHUNK_OBJECT_BYTES  # a chunk's array objects
    assert _columns_bytes(index) == 2 * (CHUNK_BYTES + objects) + 5 * ROW_BYTES  # whole pages for the chunks

    columns, ids = index.export()
    restored = EventIndex.restore({name: np.concatenate(parts) for name, parts in columns.items()}, ids)
    assert _columns_bytes(restored) == rows * ROW_BYTES + 2 * objects  # the arrays given, as they are
    for sequence in range(rows + 1, rows + CHUNK_ROWS + 1):
        _add(restored, sequence)
    assert restored.sequence_at(rows + CHUNK_ROWS - 1) == rows + CHUNK_ROWS
    assert _columns_bytes(restored) == 2 * CHUNK_ROWS * ROW_BYTES + CHUNK_BYTES + 3 * objects + 5 * ROW_BYTES

    restored.release()
    assert _columns_bytes(restored) == 5 * ROW_BYTES  # the tail alone


#: In a process of its own: the address space is capped a few MB above what the process maps, which
#: refuses a slab (13 MB) but not a chunk's heap copies (0.8 MB); the index freezes its tail onto the heap.
_FREEZE_UNDER_A_CAP = """
import json, mmap, resource, sys
import numpy as np
sys.path[:0] = sys.argv[1:2]
from array import array
from test_index_slabs import CHUNK_ROWS, COLUMNS, EventIndex, _add, _column_slabs
index = EventIndex()
for sequence in range(1, CHUNK_ROWS):
    _add(index, sequence)
slabs = _column_slabs()
full = {name: array(code, bytes(CHUNK_ROWS * array(code).itemsize)) for name, (code, _dtype) in COLUMNS.items()}
mapped = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmSize:")) * 1024
resource.setrlimit(resource.RLIMIT_AS, (mapped + (6 << 20), resource.getrlimit(resource.RLIMIT_AS)[1]))
try:
    slabs.store(full)
    refused = None
except OSError as error:
    refused = error.errno
for sequence in range(CHUNK_ROWS, CHUNK_ROWS + 11):
    _add(index, sequence)
chunk = index._chunks["seq"][0]
print(json.dumps({"refused": refused, "chunks": len(index._chunks["seq"]), "in_slab": chunk.base is not None,
                  "sequences": [index.sequence_at(row) for row in (0, CHUNK_ROWS - 1, CHUNK_ROWS, CHUNK_ROWS + 9)]}))
"""


@pytest.mark.skipif(platform.system() != "Linux", reason="reads /proc/self/status; RLIMIT_AS as Linux applies it")
def test_a_tail_freezes_onto_the_heap_when_no_slab_can_be_mapped() -> None:
    answer = subprocess.run([sys.executable, "-c", _FREEZE_UNDER_A_CAP, str(Path(__file__).parent)],
                            capture_output=True, text=True, timeout=120)
    assert answer.returncode == 0, answer.stderr
    found = json.loads(answer.stdout)
    assert found["refused"] == errno.ENOMEM, found  # the fault happened: a slab could not be mapped
    assert found["chunks"] == 1 and not found["in_slab"], found
    assert found["sequences"] == [1, CHUNK_ROWS, CHUNK_ROWS + 1, CHUNK_ROWS + 10]
