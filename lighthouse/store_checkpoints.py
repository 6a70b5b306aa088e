"""The store's checkpoint path: when index checkpoints are written, and whether one can be trusted.

A checkpoint is written on close and, while the store runs, after every ``checkpoint_every`` new
events. The state is captured in the event loop between two groups (frozen index chunks are
shared, the small tail is copied, the live id table is frozen: nothing of the log's size is copied
there) and written by a background thread, which also merges the ids into sorted arrays that the
store then adopts, so appends continue while it is written. On open, a checkpoint is used only if every segment it
covers is still the one it saw (same name, size and modification time; the newest covered segment
may have grown or been written, then its covered frames are re-verified); otherwise it is ignored, the store scans
everything, and ``health().details["checkpoint"]`` and the log say why.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from lighthouse.checkpoint import (
    CheckpointInvalid,
    CoveredSegment,
    IndexCheckpoint,
    load_checkpoint,
    write_checkpoint,
)
from lighthouse.errors import LighthouseError
from lighthouse.event_ids import IdsSnapshot
from lighthouse.framing import SEGMENT_HEADER, parse_segment_header
from lighthouse.heap import keep_large_blocks_mapped, release_free_memory
from lighthouse.id_table import IdTable
from lighthouse.index import id_key
from lighthouse.recovery import scan_segment
from lighthouse.segments import list_segments
from lighthouse.store_state import StoreState
from lighthouse.versions import Handover

__all__ = ["CheckpointPath"]

_log = logging.getLogger("lighthouse.store")


class CheckpointPath(StoreState):
    """Load, validate and write index checkpoints (a mixin of ``EventStore``)."""

    # ------------------------------------------------------------------ open and close

    def _usable_checkpoint(self) -> IndexCheckpoint | None:
        """The directory's checkpoint if it is intact and still describes the segments; else ``None`` (reported)."""
        checkpoint, reason = None, None
        try:
            checkpoint = load_checkpoint(self.path)
            self._check_not_stale(checkpoint)
        except CheckpointInvalid as exc:
            reason = str(exc)
        if reason is None and checkpoint is not None:
            self._checkpoint_status.update(loaded_rows=checkpoint.rows, loaded_created_at=checkpoint.created_at)
            return checkpoint
        if checkpoint is not None and checkpoint.mapping is not None:  # loaded but stale: drop its views, unmap
            mapping, checkpoint = checkpoint.mapping, None
            mapping.close()
        self._checkpoint_status["ignored"] = reason
        if reason != "no checkpoint":
            _log.warning("index checkpoint of %s ignored, scanning every segment: %s", self.path, reason)
        return None

    def _unmap_checkpoint(self) -> None:
        """On close: drop the index's views of the mapped checkpoint, then unmap it (nothing stays mapped)."""
        mapping, self._checkpoint_map = self._checkpoint_map, None
        if mapping is None:
            return
        self._index.release()
        self._versions.base = IdTable()
        mapping.close()

    def _check_not_stale(self, checkpoint: IndexCheckpoint) -> None:
        """Every covered segment must be provably unchanged: same size and modification time, and that
        time older than the checkpoint file's (file times are coarse: a write in the same clock tick
        as the last one would not move them). The newest covered segment may instead have grown or
        been written: then the frames the checkpoint covers are verified again."""
        covered = checkpoint.segments
        if not covered:
            raise CheckpointInvalid("checkpoint covers no segment")
        names = [p.name for p in list_segments(self.path)]
        if names[: len(covered)] != [c.name for c in covered]:
            raise CheckpointInvalid("stale: the segments it covers were removed, renamed or added before them")
        for segment in covered[:-1]:
            stat = os.stat(self.path / segment.name)
            if (stat.st_size, stat.st_mtime_ns) != (segment.size, segment.mtime_ns):
                raise CheckpointInvalid(f"stale: segment {segment.name} changed since the checkpoint")
            if segment.mtime_ns >= checkpoint.file_mtime_ns:
                raise CheckpointInvalid(f"stale: segment {segment.name} may have changed in the checkpoint's clock tick")
        last = covered[-1]
        stat = os.stat(self.path / last.name)
        if stat.st_size < last.size:
            raise CheckpointInvalid(f"stale: segment {last.name} was shortened since the checkpoint")
        unchanged = (stat.st_size, stat.st_mtime_ns) == (last.size, last.mtime_ns)
        if not unchanged or last.mtime_ns >= checkpoint.file_mtime_ns:
            self._verify_covered_frames(checkpoint, last)
            self._checkpoint_status["reverified"] = last.name  # why this open read the newest covered segment whole

    def _verify_covered_frames(self, checkpoint: IndexCheckpoint, last: CoveredSegment) -> None:
        """The newest covered segment was written after the checkpoint: its covered frames must be intact."""
        with open(self.path / last.name, "rb") as handle:
            data = handle.read(last.size)
        first = int(Path(last.name).stem)
        scan = scan_segment(
            data, last.name, last.start_seq, is_last=True, header_ok=parse_segment_header(data[:SEGMENT_HEADER]) == first
        )
        expected_damage = [d for d in checkpoint.damage if d["segment"] == last.name]
        found_last = (scan.frames[-1][0], scan.frames[-1][1].crc) if scan.frames else None
        if (
            [d.to_dict() for d in scan.damage] != expected_damage
            or found_last != checkpoint.last_frame
            or scan.next_sequence != checkpoint.next_seq
        ):
            raise CheckpointInvalid(f"stale: the frames of {last.name} it covers changed since the checkpoint")

    # ------------------------------------------------------------------ running and close

    def _maybe_checkpoint(self) -> None:
        """After a publish: start a background checkpoint once ``checkpoint_every`` events accumulated."""
        if not self.checkpoint_every or len(self._index) - self._checkpoint_rows < self.checkpoint_every:
            return
        if self._checkpoint_task is not None and not self._checkpoint_task.done():
            return
        snapshot = self._checkpoint_snapshot()
        if snapshot is None:
            return
        checkpoint, recent = snapshot
        base = checkpoint.versions
        loop = asyncio.get_running_loop()
        self._checkpoint_task = loop.run_in_executor(self._checkpoint_io, self._write_checkpoint, checkpoint, recent)
        self._checkpoint_task.add_done_callback(lambda _done: self._adopt(checkpoint, base, recent))

    async def _checkpoint_on_close(self, *, force: bool = False) -> None:
        """Write a checkpoint unless the one on disk covers everything and still describes the files (``force``:
        the newest segment was just cut, so the one on disk records a time and size it no longer has)."""
        if self._checkpoint_task is not None:
            await asyncio.wait([self._checkpoint_task])
        if not force and len(self._index) == self._checkpoint_rows and self._checkpoint_status.get("ignored") is None:
            return  # the checkpoint on disk already covers everything
        snapshot = self._checkpoint_snapshot()
        if snapshot is not None:
            await asyncio.get_running_loop().run_in_executor(self._checkpoint_io, self._write_checkpoint, *snapshot)
            self._adopt_ids(snapshot[0])

    def _checkpoint_snapshot(self) -> tuple[IndexCheckpoint, Handover] | None:
        """The state as of now (between two groups), or ``None`` when no checkpoint may be written now."""
        if self._read_only_fs or self._void is not None or not self._segments or self._write_fd is None:
            return None  # a pending void would make the checkpoint's head differ from what a scan finds
        columns, _ids = self._index.export()
        segments = []
        for segment in self._segments:
            stat = os.stat(segment.path)
            segments.append(
                CoveredSegment(segment.path.name, segment.scan_start, segment.size, stat.st_mtime_ns)
            )
        checkpoint = IndexCheckpoint(
            next_seq=self._next_seq,
            last_recorded_at=self._last_recorded_at,
            segments=segments,
            last_frame=self._last_frame,
            voided=list(self._voided),
            damage=[d.to_dict() for d in self._damage if d.kind != "torn_tail"],
            quarantined_bytes=self._quarantined_bytes,
            columns=columns,
            # frozen, not copied; merged into sorted arrays off the loop
            ids=self._index.snapshot_ids(self.checkpoint_every),
            versions=self._versions.base,  # copied with the recent versions folded in, off the loop
            created_at=time.time(),
        )
        self._checkpoint_rows = len(self._index)
        return checkpoint, self._versions.take_recent()

    def _write_checkpoint(self, checkpoint: IndexCheckpoint, recent: Handover) -> None:
        """Runs on the checkpoint thread; a failure is reported, never raised (the log is still intact)."""
        started = time.perf_counter()
        try:
            self._before_write()  # the writer's seam (e.g. its fence): a superseded writer writes no checkpoint
            versions = _with_recent(checkpoint.versions, recent)
            checkpoint.versions = versions
            replaced = write_checkpoint(self.path, checkpoint, reuse=self._reusable_checkpoint)
            mapped = self._checkpoint_map.inode if self._checkpoint_map is not None else None
            # the next checkpoint is written over the one this replaced, unless the index is still a view of it
            self._reusable_checkpoint = None if replaced is None or replaced[:2] == mapped else replaced
        except (OSError, MemoryError, LighthouseError) as exc:
            self._checkpoint_status["last_error"] = f"{type(exc).__name__}: {exc}"
            _log.warning("could not write the index checkpoint of %s: %s", self.path, exc)
            return
        status = self._checkpoint_status
        status["written"] = int(status.get("written", 0)) + 1  # type: ignore[call-overload]
        status.update(last_rows=checkpoint.rows, last_seconds=time.perf_counter() - started, ignored=None)

    def _adopt_ids(self, checkpoint: IndexCheckpoint) -> None:
        """On the loop, after a checkpoint was written: the ids it merged become the index's sorted base."""
        if isinstance(checkpoint.ids, IdsSnapshot) and not self._closed:
            self._index.adopt_ids(checkpoint.ids)

    def _adopt(self, checkpoint: IndexCheckpoint, base: IdTable, recent: Handover) -> None:
        """``_adopt_ids``, and the aggregate versions the checkpoint folded (into a copy of ``base``) become
        the live base (whether or not its file could be written: the table is right either way)."""
        self._adopt_ids(checkpoint)
        if checkpoint.versions is not base and not self._closed:
            adopted = self._versions.adopt(checkpoint.versions, recent)
            if adopted and self._checkpoint_io is not None:  # nothing reads the folded dict now: free it off the loop
                self._checkpoint_io.submit(_empty, recent.exact)
        if self._checkpoint_io is not None and not self._closed:
            # what the checkpoint replaced is freed by now (or by _empty, queued before): give its pages back
            self._checkpoint_io.submit(release_free_memory)

    def _new_checkpoint_executor(self) -> ThreadPoolExecutor:
        keep_large_blocks_mapped()  # or the checkpoints' temporaries stay resident once freed (see lighthouse.heap)
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="lighthouse-checkpoint")


def _empty(folded: dict[str, tuple[int, int]]) -> None:
    """Free the folded aggregates' ids one by one on the checkpoint thread. Freed at once wherever the last
    reference goes (250,000 ids: 14 ms), that holds the GIL, and the event loop, as long; a Python loop
    hands the GIL back to the loop every switch interval."""
    while folded:
        folded.popitem()


def _with_recent(base: IdTable, recent: Handover) -> IdTable:
    """A copy of ``base`` with the recent aggregates' newest sequences folded in: numpy only when the keys were
    hashed as they were written; else (checkpoints off: the one on close) the exact versions are hashed."""
    if recent.keys is None or recent.sequences is None:
        exact = recent.exact
        return base.updated([id_key(aggregate) for aggregate in exact], [last for _version, last in exact.values()])
    return base.updated(np.frombuffer(recent.keys, dtype=np.int64), np.frombuffer(recent.sequences, dtype=np.uint64))
