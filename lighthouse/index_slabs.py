"""Where the index keeps its full chunks: anonymous mappings of several whole chunks, outside the C heap.

The index grows for as long as the store takes events, and a soak's leak verdict judges the server's RSS
minus the index's own count of its bytes. On glibc's heap that difference grew with the events stored:
each chunk's twelve columns (16-128 KiB each, carved from the heap once ``lighthouse.heap`` fixes the
mmap threshold at 1 MiB) were placed among the request bodies and tail arrays freed around them, and
the holes between them stayed resident. Chunks copied into mappings of their own cannot fragment the
heap, and what they hold is what the index counts: a chunk is a whole number of pages, and the part of
a mapping no chunk has taken yet is not touched (transparent huge pages are refused for it, which
would make up to 2 MiB of it resident at the first write), so not resident. Several chunks share one
mapping, so the number of mappings grows 16 times slower than the chunks (one per 262,144 events at
16,384 rows per chunk). In a 10-minute HTTP soak at 10,000 events/s (one run each way) RSS minus the
index grew 15.0 KB/s with the chunks on the heap and 8.6 KB/s with them here; the heap itself stayed
at 14-21 MB.
"""

from __future__ import annotations

import mmap
from array import array
from collections.abc import Mapping

import numpy as np

__all__ = ["ChunkSlabs"]


class ChunkSlabs:
    """Copies full chunks of columns into page-aligned slots of anonymous private mappings."""

    __slots__ = ("_dtypes", "_rows", "_offsets", "_column_bytes", "_chunk_bytes", "_chunks_per_slab", "_slab", "_used",
                 "_stored")

    def __init__(self, dtypes: Mapping[str, str], rows: int, *, chunks_per_slab: int = 16) -> None:
        if rows <= 0 or chunks_per_slab <= 0:
            raise ValueError("rows and chunks_per_slab must be positive")
        self._dtypes = {name: np.dtype(dtype) for name, dtype in dtypes.items()}
        self._rows = rows
        self._offsets: dict[str, int] = {}
        at = 0
        # widest first: every column starts aligned to its item size
        for name, dtype in sorted(self._dtypes.items(), key=lambda item: -item[1].itemsize):
            self._offsets[name] = at
            at += rows * dtype.itemsize
        self._column_bytes = at  # one chunk's columns
        self._chunk_bytes = -(-at // mmap.PAGESIZE) * mmap.PAGESIZE
        self._chunks_per_slab = chunks_per_slab
        self._slab: np.ndarray | None = None  # the current mapping's bytes
        self._used = 0  # slots of the current slab taken
        self._stored = 0  # chunks stored in all

    @property
    def chunk_bytes(self) -> int:
        """Bytes one chunk takes (whole pages)."""
        return self._chunk_bytes

    def store(self, columns: Mapping[str, array]) -> dict[str, np.ndarray]:
        """Copy one full chunk (``rows`` values per column) into the next slot; its columns, read-only.
        ``OSError`` if a new mapping cannot be made (nothing is stored then)."""
        if columns.keys() != self._dtypes.keys():
            raise ValueError(f"columns {sorted(columns)} are not {sorted(self._dtypes)}")
        if any(len(values) != self._rows for values in columns.values()):
            raise ValueError(f"a chunk holds {self._rows} rows per column")
        if self._slab is None or self._used == self._chunks_per_slab:
            # private: the process's own anonymous memory (not shared memory), copy-on-write across fork
            slab = mmap.mmap(-1, self._chunk_bytes * self._chunks_per_slab, flags=mmap.MAP_PRIVATE)
            if hasattr(mmap, "MADV_NOHUGEPAGE"):
                try:
                    slab.madvise(mmap.MADV_NOHUGEPAGE)
                except OSError:  # a kernel without transparent huge pages: nothing to refuse
                    pass
            # one array over the whole mapping: every column is a slice of it (views of the mapping itself
            # would each add a memoryview and its buffer, ~300 bytes per column per chunk, never counted)
            self._slab, self._used = np.frombuffer(slab, dtype=np.uint8), 0
        base = self._used * self._chunk_bytes
        stored: dict[str, np.ndarray] = {}
        for name, dtype in self._dtypes.items():
            start = base + self._offsets[name]
            view = self._slab[start : start + self._rows * dtype.itemsize].view(dtype)
            view[:] = np.asarray(columns[name])  # by the array's own item format
            view.flags.writeable = False
            stored[name] = view
        self._used += 1
        self._stored += 1
        return stored

    def padding_bytes(self) -> int:
        """What the chunks stored take beyond their columns' own bytes (their last pages' unused part; the
        slots not yet taken are never resident, so not counted)."""
        return self._stored * (self._chunk_bytes - self._column_bytes)
