"""The event store: durable group-committed appends, indexed reads, recovery, degradation.

``EventStore`` is a thin façade over the store's paths, each in its own module and each readable alone:

- ``store_writer``: appends, group commit (one write + one fdatasync per group), rotation, voids;
- ``store_recovery``: what open does (load the index checkpoint, scan the rest, truncate a torn tail,
  quarantine corruption, rebuild);
- ``store_checkpoints``: when index checkpoints are written and whether one on disk can be trusted;
- ``store_reader``: get, query, replay, subscriptions, snapshots;
- ``store_health``: read-only entry and probing back, disk space, ``health()`` and ``stats()``.

Their shared state is declared in ``store_state``. This module holds the lifecycle: options,
the directory lock, open and close.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgpack

from lighthouse.errors import StoreLocked
from lighthouse.lock_holder import describe_lock_holder
from lighthouse.fencing import WriterFence
from lighthouse.health import HealthMonitor, HealthState
from lighthouse.index import EventIndex
from lighthouse.segments import FrameReader
from lighthouse.snapshots import SnapshotStore, fsync_directory
from lighthouse.store_health import HealthPath, StoreStats
from lighthouse.store_reader import ReadPath
from lighthouse.store_recovery import RecoveryPath
from lighthouse.store_state import DURABILITIES, TYPE_CODES, Durability
from lighthouse.store_writer import WritePath
from lighthouse.upcasting import UpcasterRegistry
from lighthouse.versions import AggregateVersions

__all__ = ["Durability", "EventStore", "StoreStats", "TYPE_CODES"]


class EventStore(WritePath, RecoveryPath, ReadPath, HealthPath):
    """An append-only, durable event log in one directory (single writer, fenced by a file lock).

    Use ``async with EventStore(path) as store:`` or ``store = await EventStore.open(path)``.

    ``durability``: ``"fsync"`` (default) acknowledges an append only after fdatasync; ``"batch"``
    acknowledges after write and syncs every ``sync_interval`` seconds; ``"none"`` never syncs until
    close. The last two exist for benchmarks and ``health()`` says that acknowledgements are not durable.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durability: Durability = "fsync",
        segment_bytes: int = 64 * 1024 * 1024,
        sync_interval: float = 0.05,
        min_free_bytes: int = 0,
        warn_free_bytes: int = 0,
        probe_interval: float = 0.2,
        subscriber_buffer: int = 10_000,
        snapshot_keep: int = 3,
        upcasters: UpcasterRegistry | None = None,
        checkpoint_every: int = 1_000_000,
    ) -> None:
        if durability not in DURABILITIES:
            raise ValueError(f"durability must be one of {DURABILITIES}, got {durability!r}")
        if not 4096 <= segment_bytes <= 1 << 31:
            raise ValueError("segment_bytes must be between 4 KiB and 2 GiB")
        if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every < 0:
            raise ValueError("checkpoint_every must be a non-negative integer (0: checkpoint only on close)")
        self.path = Path(path)
        self.durability = durability
        self.segment_bytes = segment_bytes
        self.sync_interval = sync_interval
        self.min_free_bytes = min_free_bytes
        self.warn_free_bytes = warn_free_bytes
        self.probe_interval = probe_interval
        self.subscriber_buffer = subscriber_buffer
        self.upcasters = upcasters if upcasters is not None else UpcasterRegistry()
        self._snapshots = SnapshotStore(self.path / "snapshots", keep=snapshot_keep)
        self._health = HealthMonitor()
        self._index = EventIndex()
        self._reader = FrameReader(on_corrupt=self._read_failed_checksum)
        self._read_corruptions = 0
        self._segments = []
        self._versions = AggregateVersions(
            self._event_at_sequence, self._newest_event_of, track_writes=checkpoint_every > 0
        )
        self._next_seq = 1
        self._last_recorded_at = 0.0
        self._pending = []
        self._committing = False
        self._lone_appender = False
        self._yielding_lone = 0
        self._void = None
        self._damage = []
        self._voided = []
        self._subscribers = set()
        self._packer = msgpack.Packer(use_bin_type=True)
        self._lock_fd = None
        self._fence = WriterFence(self.path)  # unclaimed until open; an unclaimed fence never refuses
        self._write_fd = None
        self._allocated_end = 0
        self._tail_dirty = False
        self._unsynced = False
        self._last_write_seconds = float("inf")  # the first write after open goes to the I/O thread
        self._write_ns = 0  # every group write and its sync, summed: how long this store waited on the disk
        self._read_only_fs = False
        self._unclaimed_view: tuple[list[str], int, int] | None = None  # the directory as seen without a claim
        self._opened = False
        self._closed = False
        self._closing = False
        self._io = None
        self._wake = None
        self._writer_task = None
        self._probe_task = None
        self._flusher_task = None
        self._counters = {"appends": 0, "batches": 0, "groups": 0, "fsyncs": 0}
        self._quarantined_bytes = 0
        self._torn_bytes = 0
        self._open_seconds = 0.0
        self.checkpoint_every = checkpoint_every
        self._last_frame = None
        self._checkpoint_rows = 0
        self._checkpoint_status = {}
        self._checkpoint_task = None
        self._checkpoint_io = None
        self._checkpoint_map = None
        self._reusable_checkpoint = None

    @classmethod
    async def open(cls, path: str | os.PathLike[str], **options: Any) -> EventStore:
        store = cls(path, **options)
        await store._open()
        return store

    async def __aenter__(self) -> EventStore:
        await self._open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def write_seconds(self) -> float:
        """Time spent writing and syncing appended groups since open (a counter; ``stats()`` has it too)."""
        return self._write_ns / 1e9

    async def _open(self) -> None:
        if self._opened:
            return
        started = time.perf_counter()
        if not self.path.is_dir():
            self.path.mkdir(parents=True, exist_ok=True)
            fsync_directory(self.path.parent)  # the new directory's name is durable before anything in it
        self._acquire_lock()
        try:
            unclaimed = self._claim_directory()  # supersede any other writer before reading or writing anything
            self._recover()
        except BaseException:
            self._unmap_checkpoint()
            self._release_lock()
            raise
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lighthouse-io")
        self._checkpoint_io = self._new_checkpoint_executor()
        self._wake = asyncio.Event()
        loop = asyncio.get_running_loop()
        self._writer_task = loop.create_task(self._writer_loop(), name="lighthouse-writer")
        if self.durability == "batch":
            self._flusher_task = loop.create_task(self._flusher_loop())
        self._opened = True
        if unclaimed is not None:
            self._enter_read_only(unclaimed, "claiming the directory")  # the probe claims it once it can
        self._open_seconds = time.perf_counter() - started
        await self._record_damage_events()

    def _acquire_lock(self) -> None:
        try:
            fd = os.open(self.path / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            if exc.errno != errno.EROFS:
                raise
            # A read-only filesystem: lock the directory itself and serve reads without writing anything.
            fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
            self._read_only_fs = True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = describe_lock_holder(fd)
            os.close(fd)
            raise StoreLocked(f"{self.path} is in use by another process or store"
                              + (f" ({holder})" if holder else ""), path=str(self.path)) from None
        self._lock_fd = fd

    def _claim_directory(self) -> OSError | None:
        """The lock is not enough (a deleted LOCK file, a filesystem ignoring flock): see fencing.py.

        A claim that cannot be written (a restart on a full disk) does not stop the store from serving what it
        holds: it opens read-only and its probe claims the directory before any write. Returns that error."""
        self._fence = WriterFence(self.path, on_fenced=lambda reason: self._health.raise_condition(
            "writer_fenced", HealthState.FAILED, reason))
        if self._read_only_fs:
            return None
        try:
            self._fence.claim()
        except OSError as exc:
            self._fence.defer(f"{errno.errorcode.get(exc.errno or 0, 'EIO')} while claiming the directory: "
                              f"{exc.strerror or exc}")
            return exc
        return None

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    async def close(self) -> None:
        """Stop accepting appends, finish the queued ones, sync, release the directory."""
        if self._closed or not self._opened:
            self._closed = True
            return
        self._closing = True
        assert self._wake is not None
        self._wake.set()
        if self._writer_task is not None:
            await self._writer_task
        for task in (self._probe_task, self._flusher_task):
            if task is not None:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        cut = False
        if self._write_fd is not None:
            try:
                if self._unsynced:
                    os.fdatasync(self._write_fd)
            except OSError:
                pass
            cut = self._release_reserve()
        # After the cut: the checkpoint records the newest segment's final size and time, so the next open
        # finds it unchanged instead of re-reading and re-verifying all of it.
        await self._checkpoint_on_close(force=cut)
        if self._write_fd is not None:
            os.close(self._write_fd)
            self._write_fd = None
        self._closed = True
        for sub in list(self._subscribers):
            sub.end()
        self._reader.close()
        for executor in (self._io, self._checkpoint_io):
            if executor is not None:
                executor.shutdown(wait=True)
        self._unmap_checkpoint()
        self._release_lock()

