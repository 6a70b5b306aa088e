"""Space allocated ahead of the writes: the newest segment's blocks exist before an append writes into them
(its fdatasync then commits no size change), a closed store's files still end at their last frame, and
the all-zero tail a crash leaves is cut on open without a damage record, while anything else after the
last frame is still a torn tail.

The crash is real: a child process appends and SIGKILLs itself, so the allocated space is on disk as
the kernel left it. Each test first proves the unused space is there before judging the reopened store.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lighthouse import Event, EventStore, EventType, HealthState
from lighthouse.checkpoint import load_checkpoint
from lighthouse.recovery import scan_segment
from lighthouse.store_writer import PREALLOCATE_BYTES

pytestmark = pytest.mark.ci


@pytest.fixture(autouse=True)
def _fallocate_works(tmp_path: Path) -> None:
    probe = tmp_path / "fallocate-probe"
    with open(probe, "wb") as handle:
        try:
            os.posix_fallocate(handle.fileno(), 0, 4096)
        except OSError as exc:
            pytest.skip(f"posix_fallocate is not supported on this filesystem: {exc}")
    probe.unlink()


def _zeros_from(path: Path, offset: int) -> bool:
    tail = path.read_bytes()[offset:]
    return len(tail) > 0 and tail.count(0) == len(tail)


def _event(n: int, pad: int = 0) -> Event:
    return Event(EventType.CUSTOM, aggregate_id=f"a:{n % 3}", event_id=f"e{n}", source_agent="s",
                 data={"n": n, "pad": "x" * pad})


def _crash_after_appending(directory: Path, count: int) -> None:
    """A child process appends ``count`` events (each acknowledged) and then SIGKILLs itself."""
    script = textwrap.dedent(f"""
        import asyncio, os, signal
        from lighthouse import Event, EventStore, EventType

        async def main():
            store = await EventStore.open({str(directory)!r})
            for n in range({count}):
                await store.append(Event(EventType.CUSTOM, aggregate_id=f"a:{{n % 3}}", event_id=f"e{{n}}",
                                         source_agent="s", data={{"n": n}}))
            os.kill(os.getpid(), signal.SIGKILL)

        asyncio.run(main())
    """)
    child = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).parents[3], timeout=120)
    assert child.returncode == -signal.SIGKILL, f"the child did not die by SIGKILL: {child.returncode}"


def test_an_open_store_allocates_ahead_and_a_closed_one_ends_at_its_last_frame(tmp_path: Path, run, disk) -> None:
    directory = tmp_path / "s"

    async def write() -> int:
        async with EventStore(directory) as store:
            for n in range(5):
                await store.append(_event(n))
            return disk.last_segment(directory).stat().st_size

    size_while_open = run(write())
    segment = disk.last_segment(directory)
    frames = disk.frames(segment)
    assert sum(frame.count for frame in frames) == 5
    assert segment.stat().st_size == frames[-1].end, "close left unused space after the last frame"
    assert size_while_open >= frames[0].end + PREALLOCATE_BYTES, "nothing was allocated ahead of the writes"


def _checkpointed_newest_segment(directory: Path) -> tuple[str, int, int]:
    checkpoint = load_checkpoint(directory)
    try:
        last = checkpoint.segments[-1]
        return last.name, last.size, last.mtime_ns
    finally:
        if checkpoint.mapping is not None:
            checkpoint.mapping.close()


@pytest.mark.parametrize("checkpoint_every", [0, 5], ids=["checkpoint-on-close", "background-checkpoint-covers-all"])
def test_close_cuts_the_allocated_space_before_its_checkpoint_records_the_newest_segment(
        tmp_path: Path, run, disk, checkpoint_every: int) -> None:
    """The cut changes the newest segment's size and time: a checkpoint taken before it would describe a file that no
    longer exists, and the next open would read and re-verify that whole segment. Also when a background checkpoint
    already covered every event (nothing new to checkpoint on close, except the cut)."""
    directory = tmp_path / "s"

    async def write() -> int:
        async with EventStore(directory, checkpoint_every=checkpoint_every) as store:
            for n in range(5):
                await store.append(_event(n))
            while checkpoint_every and store.health().details["checkpoint"].get("written", 0) < 1:
                await asyncio.sleep(0.01)  # polling the background checkpoint's outcome, not a wait for time
            return disk.last_segment(directory).stat().st_size

    size_while_open = run(write())
    segment = disk.last_segment(directory)
    assert size_while_open > segment.stat().st_size, "nothing was allocated ahead, so nothing was cut"
    name, size, mtime_ns = _checkpointed_newest_segment(directory)
    stat = segment.stat()
    assert (name, size, mtime_ns) == (segment.name, stat.st_size, stat.st_mtime_ns)


def test_an_open_that_re_verifies_the_newest_segment_says_so(tmp_path: Path, run, disk) -> None:
    """Written after its checkpoint (here: its time moved), the newest covered segment is read and verified again, and
    the checkpoint report names it: the reason such an open is slower."""
    directory = tmp_path / "s"

    async def write() -> None:
        async with EventStore(directory) as store:
            for n in range(5):
                await store.append(_event(n))

    async def reopen() -> dict[str, object]:
        async with EventStore(directory) as store:
            assert store.stats().events == 5
            return dict(store.health().details["checkpoint"])

    run(write())
    segment = disk.last_segment(directory)
    later = segment.stat().st_mtime_ns + 10**9
    os.utime(segment, ns=(later, later))
    report = run(reopen())
    assert report["reverified"] == segment.name and report["loaded_rows"] == 5


def test_closed_segments_hold_no_unused_space(tmp_path: Path, run, disk) -> None:
    """The allocation stops at the segment's nominal size: a segment rotated away ends at its last frame."""
    directory = tmp_path / "s"

    async def write() -> list[tuple[int, int]]:
        async with EventStore(directory, segment_bytes=8192) as store:
            for n in range(60):
                await store.append(_event(n, pad=500))
            return [(path.stat().st_size, disk.frames(path)[-1].end) for path in disk.segments(directory)[:-1]]

    closed = run(write())
    assert len(closed) >= 3, "the store never rotated"
    assert all(size == last_end for size, last_end in closed), closed


def test_a_crash_leaves_unused_zeros_that_reopening_cuts_without_a_damage_record(tmp_path: Path, run, disk) -> None:
    directory = tmp_path / "s"
    _crash_after_appending(directory, 40)
    segment = disk.last_segment(directory)
    last_end = disk.frames(segment)[-1].end
    assert segment.stat().st_size > last_end and _zeros_from(segment, last_end), "no unused space after the crash"

    async def reopen() -> None:
        async with EventStore(directory) as store:
            assert [e.event_id async for e in store.replay()] == [f"e{n}" for n in range(40)]
            health = store.health()
            assert health.state == HealthState.HEALTHY, health.reasons
            assert store.stats().torn_tail_bytes_truncated == 0
            assert segment.stat().st_size == last_end, "the unused space was not cut on open"
            await store.append(_event(40))
        async with EventStore(directory) as store:
            assert [e.event_id async for e in store.replay()] == [f"e{n}" for n in range(41)]
            assert store.health().state == HealthState.HEALTHY

    run(reopen())


def test_garbage_after_the_unused_zeros_is_still_a_torn_tail(tmp_path: Path, run, disk) -> None:
    directory = tmp_path / "s"
    _crash_after_appending(directory, 10)
    segment = disk.last_segment(directory)
    last_end = disk.frames(segment)[-1].end
    crashed_size = segment.stat().st_size
    assert crashed_size > last_end and _zeros_from(segment, last_end)
    with open(segment, "ab") as handle:
        handle.write(b"\xde\xad" * 50)
    assert segment.stat().st_size == crashed_size + 100

    async def reopen() -> None:
        async with EventStore(directory) as store:
            assert [e.event_id async for e in store.replay()] == [f"e{n}" for n in range(10)]
            assert store.stats().torn_tail_bytes_truncated == crashed_size + 100 - last_end
            assert store.health().state == HealthState.HEALTHY
            assert segment.stat().st_size == last_end

    run(reopen())


def test_zeros_after_the_frames_of_a_closed_segment_are_corruption(tmp_path: Path, run, disk) -> None:
    """Only the newest segment is ever allocated ahead: zeros ending an older one were not left by a crash."""
    directory = tmp_path / "s"

    async def write() -> None:
        async with EventStore(directory, segment_bytes=8192) as store:
            for n in range(60):
                await store.append(_event(n, pad=500))

    run(write())
    first = disk.segments(directory)[0]
    raw = first.read_bytes()
    frames = disk.frames(first)
    scan_as_last = scan_segment(raw + bytes(5000), first.name, 1, is_last=True)
    scan_as_closed = scan_segment(raw + bytes(5000), first.name, 1, is_last=False)
    assert scan_as_last.truncate_at == frames[-1].end and scan_as_last.damage == []
    assert [d.kind for d in scan_as_closed.damage] == ["corrupt"]
    assert scan_as_closed.truncate_at is None
