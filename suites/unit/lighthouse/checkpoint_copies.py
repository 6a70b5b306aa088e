"""A checkpoint file's contents as an in-memory ``IndexCheckpoint``, for tests that write it again."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lighthouse.checkpoint import IndexCheckpoint, SortedIds, load_checkpoint
from lighthouse.id_table import IdTable

__all__ = ["in_memory"]


def in_memory(path: Path, *, parts: int = 1) -> IndexCheckpoint:
    """The checkpoint in ``path``, its arrays copied out of the mapping (which is closed); each column cut
    into ``parts`` arrays of its own, as a running store's chunks are."""
    loaded = load_checkpoint(path)
    keys, values, count = loaded.versions.buffers()
    copy = IndexCheckpoint(
        next_seq=loaded.next_seq, last_recorded_at=loaded.last_recorded_at, segments=loaded.segments,
        last_frame=loaded.last_frame, voided=loaded.voided, damage=loaded.damage,
        quarantined_bytes=loaded.quarantined_bytes,
        columns={name: [part.copy() for part in np.array_split(column, parts)]
                 for name, column in loaded.columns.items()},
        ids=SortedIds(*(np.array(a) for a in loaded.ids.sorted_arrays())),
        versions=IdTable.from_buffers(memoryview(bytearray(keys)).cast("q"), memoryview(bytearray(values)).cast("Q"), count),
    )
    del loaded.columns, loaded.ids, loaded.versions
    assert loaded.mapping is not None and loaded.mapping.close()
    return copy
