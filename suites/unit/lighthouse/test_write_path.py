"""The write path under failing system calls: what a failed write leaves on disk, what it tells the caller,
and what a rotation syncs. Faults are injected at the system call (``os.pwrite``, ``os.ftruncate``,
``os.fsync``, ``os.fdatasync``) on the segment files of a real store in a tmp dir, so the store's own
write, cleanup and rotation code runs; every test first proves its fault hit the file it aimed at.
"""

from __future__ import annotations

import asyncio
import errno
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lighthouse import ConcurrencyConflict, EventStore, HealthState, InvalidEvent, WriteFailed


def _path_of(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


class SyscallFault:
    """Stands in for one ``os`` call: the next ``failures`` calls on a file that ``aims_at`` fail with
    ``code``; a ``pwrite`` may first write ``short_by_half`` of its bytes for real. Every call is recorded."""

    def __init__(self, real: Callable[..., Any], code: int, aims_at: Callable[[str], bool]) -> None:
        self.real, self.code, self.aims_at = real, code, aims_at
        self.failures = 0
        self.half_written = False
        self.calls: list[str] = []
        self.failed: list[str] = []

    def __call__(self, fd: int, *args: Any) -> Any:
        path = _path_of(fd)
        self.calls.append(path)
        if self.failures and self.aims_at(path):
            self.failures -= 1
            self.failed.append(path)
            if self.half_written:
                data, offset = args
                self.real(fd, bytes(data)[: len(data) // 2], offset)
            raise OSError(self.code, os.strerror(self.code))
        return self.real(fd, *args)


def _segment(path: str) -> bool:
    return path.endswith(".seg")


def test_a_write_that_fails_half_way_is_cut_back_and_refused_as_not_written(
    store_dir: Path, run, make_event, read_all, disk, monkeypatch: pytest.MonkeyPatch
) -> None:
    pwrite = SyscallFault(os.pwrite, errno.ENOSPC, _segment)
    pwrite.half_written = True
    monkeypatch.setattr(os, "pwrite", pwrite)

    async def scenario() -> None:
        async with EventStore(store_dir, probe_interval=60) as store:
            kept = [await store.append(make_event(i)) for i in range(2)]
            segment = disk.last_segment(store_dir)
            size = disk.frames(segment)[-1].end  # the file is allocated further ahead of its last frame
            pwrite.failures = 1
            with pytest.raises(WriteFailed) as caught:
                await store.append_batch([make_event(10), make_event(11)])
            assert pwrite.failed == [str(segment.resolve())], "the fault did not hit the segment's write"
            assert segment.stat().st_size == size, "the half-written frame was left behind"
            assert caught.value.details == {
                "errno": "ENOSPC", "outcome": "not_written", "first_sequence": 3, "last_sequence": 4}
            assert "No space left on device" in str(caught.value)
            health = store.health()
            assert health.state == HealthState.READ_ONLY
            assert health.last_error == "ENOSPC while writing a group: No space left on device"
            assert await read_all(store) == kept
            assert store.head_sequence == 2

    run(scenario())


def test_a_write_whose_cleanup_also_fails_has_an_unknown_outcome_and_the_probe_cuts_the_tail(
    store_dir: Path, run, make_event, read_all, disk, monkeypatch: pytest.MonkeyPatch
) -> None:
    pwrite = SyscallFault(os.pwrite, errno.EIO, _segment)
    pwrite.half_written = True
    ftruncate = SyscallFault(os.ftruncate, errno.EIO, _segment)
    monkeypatch.setattr(os, "pwrite", pwrite)
    monkeypatch.setattr(os, "ftruncate", ftruncate)

    async def scenario() -> None:
        async with EventStore(store_dir, probe_interval=60) as store:
            kept = await store.append(make_event(0))
            segment = disk.last_segment(store_dir)
            size = disk.frames(segment)[-1].end  # the file is allocated further ahead of its last frame
            pwrite.failures = ftruncate.failures = 1
            with pytest.raises(WriteFailed) as caught:
                await store.append(make_event(1))
            assert pwrite.failed and ftruncate.failed == [str(segment.resolve())], "the faults did not happen"
            assert segment.read_bytes()[size:].strip(b"\0"), "the half-written bytes should still be there"
            assert caught.value.details["outcome"] == "unknown", "bytes may remain: the outcome cannot be not_written"
            assert store._probe_write(), "the probe did not succeed once the disk worked again"
            assert segment.stat().st_size == size, "the probe did not cut the dirty tail first"
            assert store.health().voided_sequences == [(2, 2)]
            assert await read_all(store) == [kept]

    run(scenario())


def test_a_failed_sync_of_a_new_segment_removes_it_and_the_store_carries_on_in_the_old_one(
    store_dir: Path, run, make_event, read_all, disk, monkeypatch: pytest.MonkeyPatch
) -> None:
    old: set[str] = set()
    fsync = SyscallFault(os.fsync, errno.EIO, lambda path: _segment(path) and path not in old)
    monkeypatch.setattr(os, "fsync", fsync)

    async def scenario() -> None:
        async with EventStore(store_dir, segment_bytes=4096, probe_interval=0.01) as store:
            stored = []
            while store.stats().bytes_on_disk < 4096:  # the next append must rotate
                stored.append(await store.append(make_event(len(stored), data={"pad": "p" * 700})))
            before = disk.segments(store_dir)
            old.update(str(p.resolve()) for p in before)
            fsync.failures = 1
            with pytest.raises(WriteFailed) as caught:
                await store.append(make_event(99))
            assert len(fsync.failed) == 1, "the fault did not hit a new segment's fsync"
            assert caught.value.details["outcome"] == "not_written"
            assert "could not start a new segment" in str(caught.value)
            assert disk.segments(store_dir) == before, "the half-made segment was left in the directory"
            assert store.stats().segments == 1
            assert store.health().last_error == "EIO while rotating to a new segment: Input/output error"
            assert await read_all(store) == stored
            deadline = asyncio.get_running_loop().time() + 30
            while store.health().state != HealthState.HEALTHY:  # the probe heals the store: the fault is gone
                assert asyncio.get_running_loop().time() < deadline, "the store never healed"
                await asyncio.sleep(0.01)
            after = await store.append(make_event(100))
            assert after.sequence == len(stored) + 1, "a refused rotation must not use up a sequence"
            assert len(disk.segments(store_dir)) == 2
            assert int(disk.last_segment(store_dir).stem) == after.sequence

    run(scenario(), 60)


def test_batch_durability_syncs_the_full_segment_before_rotating_away_from_it(
    store_dir: Path, run, make_event, read_all, disk, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real = os.fdatasync

    def fdatasync(fd: int) -> None:
        synced.append(_path_of(fd))
        real(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)

    async def scenario() -> None:
        async with EventStore(store_dir, durability="batch", sync_interval=3600, segment_bytes=4096) as store:
            stored = [await store.append(make_event(i, data={"pad": "p" * 700})) for i in range(12)]
            segments = disk.segments(store_dir)
            assert len(segments) >= 2, "the appends did not rotate"
            for full in segments[:-1]:
                assert str(full.resolve()) in synced, f"{full.name} was never synced before the store moved on"
            assert str(segments[-1].resolve()) not in synced, "batch mode synced the open segment per append"
            assert await read_all(store) == stored

    run(scenario())


def test_a_failed_periodic_sync_in_batch_mode_turns_the_store_read_only(
    store_dir: Path, run, make_event, monkeypatch: pytest.MonkeyPatch
) -> None:
    fdatasync = SyscallFault(os.fdatasync, errno.EIO, _segment)
    monkeypatch.setattr(os, "fdatasync", fdatasync)

    async def scenario() -> None:
        async with EventStore(store_dir, durability="batch", sync_interval=0.01, probe_interval=60) as store:
            fdatasync.failures = 1
            await store.append(make_event(0))
            deadline = asyncio.get_running_loop().time() + 10  # the flusher ticks every 10 ms
            while store.health().state != HealthState.READ_ONLY:
                assert asyncio.get_running_loop().time() < deadline, "a failed periodic sync went unnoticed"
                await asyncio.sleep(0.01)
            assert fdatasync.failed, "the fault did not happen"
            assert store.health().last_error == "EIO while syncing: Input/output error"

    run(scenario(), 60)


def test_every_write_sync_and_rotation_of_a_segment_runs_on_the_one_io_thread(
    store_dir: Path, run, make_event, disk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One I/O thread orders a group's write, the flusher's sync and a rotation's close: none can race another."""
    threads: list[tuple[str, str]] = []

    def spy(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(fd: int, *args: Any) -> Any:
            if _segment(_path_of(fd)):
                threads.append((name, threading.current_thread().name))
            return real(fd, *args)
        return call

    async def scenario() -> None:
        async with EventStore(store_dir, durability="batch", sync_interval=0.01, segment_bytes=4096) as store:
            for name in ("pwrite", "fsync", "fdatasync"):
                monkeypatch.setattr(os, name, spy(name, getattr(os, name)))
            for i in range(12):
                await store.append(make_event(i, data={"pad": "p" * 700}))
            assert len(disk.segments(store_dir)) >= 2, "the appends did not rotate"
            monkeypatch.undo()

    run(scenario())
    assert {name for name, _ in threads} == {"pwrite", "fsync", "fdatasync"}, "a write, a rotation or a sync was missed"
    elsewhere = [(name, thread) for name, thread in threads if not thread.startswith("lighthouse-io")]
    assert not elsewhere, f"segment I/O ran off the store's I/O thread: {elsewhere}"


def test_a_version_conflict_and_a_batch_that_is_not_a_list_say_what_was_wrong(store_dir: Path, run, make_event) -> None:
    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            await store.append(make_event(0, aggregate_id="cart:1"))
            with pytest.raises(ConcurrencyConflict, match=r"^aggregate cart:1 is at version 1, expected 0$"):
                await store.append(make_event(1, aggregate_id="cart:1"), expected_version=0)
            with pytest.raises(InvalidEvent, match=r"^a batch must be a list of events$"):
                await store.append_batch("not a list")  # type: ignore[arg-type]

    run(scenario())


def test_a_retry_that_shared_a_group_with_a_cancelled_original_is_refused_and_the_event_stored_once(
    store_dir: Path, run, make_event, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The retry cannot borrow an outcome its original never received; a later retry gets the stored copy."""
    entered, gate = threading.Event(), threading.Event()
    real = os.fdatasync

    def held_fdatasync(fd: int) -> None:
        if _segment(_path_of(fd)):
            entered.set()
            assert gate.wait(10), "the test never released the sync"
        real(fd)

    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            monkeypatch.setattr(os, "fdatasync", held_fdatasync)
            event = make_event(0)
            original = asyncio.create_task(store.append(event))
            retry = asyncio.create_task(store.append(event))
            assert await asyncio.get_running_loop().run_in_executor(None, entered.wait, 10), "the group never synced"
            original.cancel()
            gate.set()
            with pytest.raises(WriteFailed, match=r"^the original append did not complete$"):
                await retry
            assert original.cancelled()
            again = await store.append(event)
            assert [e async for e in store.replay()] == [again], "the event must be stored exactly once"

    run(scenario())


def test_batch_mode_periodic_syncs_never_hit_a_segment_a_rotation_just_closed(
    store_dir: Path, run, make_event, disk
) -> None:
    """The flusher must sync the segment being written when its turn on the I/O thread comes, not a descriptor
    it read before a queued rotation closed it (that sync fails with EBADF and turns the store read-only)."""

    async def scenario() -> None:
        async with EventStore(store_dir, durability="batch", sync_interval=0.0005, segment_bytes=4096) as store:
            for i in range(150):
                await store.append(make_event(i, data={"pad": "p" * 900}))
                assert store.health().state == HealthState.HEALTHY, store.health().last_error
            assert len(disk.segments(store_dir)) >= 30, "the appends did not rotate often enough"

    run(scenario(), 120)
