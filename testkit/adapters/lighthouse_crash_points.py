"""Lighthouse with whitebox kill points: the store SIGKILLs its own process at the Nth pass through a named point.

The crash-point factory the chaos kit's :func:`~testkit.chaos.crash_points.run_crash_point_kills`
drives (``crash_point=NAME, crash_at=N``). It is not a broken store: the crash lands exactly between a
group's write, its fsync and its ack, or between a new segment's creation and its directory's fsync.
"""

from __future__ import annotations

import os
import random
import signal
from pathlib import Path
from typing import Any

from lighthouse import EventStore

from testkit.adapters.lighthouse import CRASH_POINTS, LighthouseAdapter
from testkit.faults.corruption import append_garbage

__all__ = ["CRASH_POINTS", "CrashPointStore", "crash_point_adapter"]

class CrashPointStore(EventStore):
    """The real store, plus ``crash_point``/``crash_at``: SIGKILL this process at the Nth pass there."""

    def __init__(self, path: Any, *, crash_point: str = "", crash_at: int = 1, **options: Any) -> None:
        if crash_point and crash_point not in CRASH_POINTS:
            raise ValueError(f"unknown crash point {crash_point!r}; known: {CRASH_POINTS}")
        if crash_at < 1:
            raise ValueError("crash_at must be >= 1")
        super().__init__(path, **options)
        self._crash_point = crash_point
        self._crash_left = crash_at

    def _passing(self, point: str) -> None:
        if point == self._crash_point:
            self._crash_left -= 1
            if self._crash_left == 0:
                os.kill(os.getpid(), signal.SIGKILL)

    def _write_durably(self, offset: int, data: bytes) -> None:
        self._passing("before_write")
        super()._write_durably(offset, data)

    def _sync_after_write(self, fd: int) -> None:
        self._passing("before_sync")
        super()._sync_after_write(fd)
        self._passing("after_sync")

    def _sync_directory(self) -> None:
        self._passing("segment_created")
        super()._sync_directory()
        self._passing("after_directory_sync")

    def _truncate_torn_tail(self, path: Path, at: int) -> None:
        super()._truncate_torn_tail(path, at)
        self._passing("torn_tail_truncated")


def crash_point_adapter(data_dir: str | os.PathLike[str], *, crash_point: str = "", crash_at: int = 1,
                        crash_seed: int = 0, **options: Any) -> LighthouseAdapter:
    """A lighthouse adapter whose store dies at ``crash_point``; ``torn_tail_truncated`` first tears the tail.

    A SIGKILL never tears a write in the page cache, so for the recovery point the adapter leaves a
    torn tail of garbage (1-200 bytes, from ``crash_seed``) on the newest segment and dies at the first cut.
    """
    if crash_point == "torn_tail_truncated":
        segments = sorted(Path(data_dir).glob("*.seg"))
        if segments:
            rng = random.Random(crash_seed)
            append_garbage(segments[-1], rng.randint(1, 200), rng).require()
        crash_at = 1
    adapter = LighthouseAdapter(data_dir, store_factory=CrashPointStore, crash_point=crash_point, crash_at=crash_at,
                                **options)
    adapter.name = "lighthouse[crash points]"
    return adapter
