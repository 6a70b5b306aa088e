"""Seeded store bugs for the mutation loop (``make mutants``): one realistic durability bug per class.

Each class breaks exactly one rule through a subclass of the real store (the working tree is never
touched), the way real stores have broken it. :mod:`variants` holds the older ones (ack before fsync,
skipped directory fsync, truncation at the first bad checksum, unverified checksums); these cover the
questions the chaos suite used to miss: failed syncs, refused numbers, batches, short writes, stale
offsets after recovery, snapshots, retries and the store's own events. Children import this module
by name (``AdapterSpec`` carries the class), so it must stay importable on its own.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lighthouse import Event, EventStore
from lighthouse.snapshots import SnapshotStore

__all__ = [
    "SEEDED_BUGS",
    "AcceptRetryAsNewEvent",
    "DuplicateIntegrityEvents",
    "IgnoreShortWrites",
    "NonAtomicBatch",
    "RetrySyncAndAck",
    "ReuseRefusedSequences",
    "SnapshotInPlace",
    "SnapshotSkipDirectoryFsync",
    "StaleOffsetAfterRecovery",
]


class RetrySyncAndAck(EventStore):
    """fsyncgate: a failed fdatasync is retried, the retry "succeeds" and the group is acknowledged.

    Linux marked the dirty pages clean when writeback failed, so the retry has nothing to write: the
    acknowledged group never reaches the disk (PostgreSQL's bug until 2018).
    """

    def _sync_file(self, fd: int, *, full: bool = False) -> None:
        try:
            super()._sync_file(fd, full=full)
        except OSError:
            super()._sync_file(fd, full=full)


class ReuseRefusedSequences(EventStore):
    """A refused write's sequence numbers are silently handed out again (no void range is recorded)."""

    def _after_failed_write(self, exc: OSError, first_attempted: int, next_seq: int, accepted: Any) -> None:
        super()._after_failed_write(exc, first_attempted, next_seq, accepted)
        self._void = None  # forget the refused numbers: the next write gets them again
        self._next_seq = first_attempted


class NonAtomicBatch(EventStore):
    """A batch is appended event by event (one frame, one sync each): a crash can keep half of it."""

    async def append_batch(
        self, events: Sequence[Event], *, expected_versions: Mapping[str, int] | None = None, from_wire: bool = False
    ) -> list[Event]:
        return [await self.append(event, from_wire=from_wire) for event in events]


class IgnoreShortWrites(EventStore):
    """One ``pwrite`` per group, its count unchecked: a short write is taken for a whole one."""

    def _write_durably(self, offset: int, data: bytes) -> None:
        fd = self._write_fd
        assert fd is not None
        os.pwrite(fd, data, offset)
        self._sync_after_write(fd)


class StaleOffsetAfterRecovery(EventStore):
    """After recovery cut a torn tail, the store keeps writing at the old end of file (a stale offset).

    The cut bytes come back as zeros between the last good frame and the next one: the log looks
    intact to this incarnation and damaged to the next one.
    """

    def _recover(self) -> None:
        cut: dict[Path, int] = {}
        truncate = self._truncate_torn_tail

        def remember(path: Path, at: int) -> None:
            cut[path] = os.stat(path).st_size - at
            truncate(path, at)

        self._truncate_torn_tail = remember  # type: ignore[method-assign]
        try:
            super()._recover()
        finally:
            del self._truncate_torn_tail
        if self._segments and self._segments[-1].path in cut:
            self._segments[-1].size += cut[self._segments[-1].path]


class _InPlaceSnapshots(SnapshotStore):
    """Writes the snapshot file under its final name, never synced: a crash can leave it torn or gone."""

    def save(self, name: str, state: Any, at_sequence: int, *, incremental: bool = False) -> Any:
        snapshot = super().save(name, state, at_sequence, incremental=incremental)
        final = self._dir(name) / f"{at_sequence:020d}.snap"
        data = final.read_bytes()
        final.unlink()
        fd = os.open(final, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, data)  # no fsync, no rename, no directory fsync
        finally:
            os.close(fd)
        return snapshot


class SnapshotInPlace(EventStore):
    """Snapshots written in place without fsync, rename or directory fsync."""

    def __init__(self, path: Any, **options: Any) -> None:
        super().__init__(path, **options)
        self._snapshots = _InPlaceSnapshots(self._snapshots.root, keep=self._snapshots.keep)


class _NoDirectorySyncSnapshots(SnapshotStore):
    """temp, fsync, rename, but the directory is never fsynced: the rename may not survive a crash."""

    def save(self, name: str, state: Any, at_sequence: int, *, incremental: bool = False) -> Any:
        import lighthouse.snapshots as module

        real = module.fsync_directory
        module.fsync_directory = lambda path: None  # type: ignore[assignment]
        try:
            return super().save(name, state, at_sequence, incremental=incremental)
        finally:
            module.fsync_directory = real


class SnapshotSkipDirectoryFsync(EventStore):
    """Snapshots published by rename without the directory fsync."""

    def __init__(self, path: Any, **options: Any) -> None:
        super().__init__(path, **options)
        self._snapshots = _NoDirectorySyncSnapshots(self._snapshots.root, keep=self._snapshots.keep)


class AcceptRetryAsNewEvent(EventStore):
    """A retried append (same id, same content) is stored again instead of answered with the stored copy."""

    def _already_stored(self, pending: Any) -> None:
        return None


class DuplicateIntegrityEvents(EventStore):
    """Every open records each damaged range again: the store's own ``corruption_detected`` events repeat."""

    def _find_by_id(self, event_id: str) -> Event | None:
        found = super()._find_by_id(event_id)
        if found is not None and found.source_agent == "lighthouse":
            return None
        return found


SEEDED_BUGS: tuple[type[EventStore], ...] = (
    RetrySyncAndAck,
    ReuseRefusedSequences,
    NonAtomicBatch,
    IgnoreShortWrites,
    StaleOffsetAfterRecovery,
    SnapshotInPlace,
    SnapshotSkipDirectoryFsync,
    AcceptRetryAsNewEvent,
    DuplicateIntegrityEvents,
)
