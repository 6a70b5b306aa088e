"""A restart whose writer claim cannot be written (ENOSPC on the OWNER file): the store serves reads, refuses
writes, repairs nothing until it holds the claim, and fails rather than write on a view another writer changed.

The fault is injected at the system call: ``os.write`` of the OWNER record's temporary file fails with ENOSPC
while ``full`` is set, as on a full disk (the chaos suite does the same with a real full tmpfs)."""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from lighthouse import EventStore
from lighthouse.errors import StoreReadOnly
from lighthouse.fencing import OWNER_FILE
from lighthouse.health import HealthState

pytestmark = pytest.mark.ci


class _FullDiskForOwner:
    """ENOSPC for writes to OWNER temporary files while ``full``; counts the refusals (the fault's proof)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.full = True
        self.refused = 0
        real_write = os.write

        def write(fd: int, data: bytes) -> int:
            if self.full and os.readlink(f"/proc/self/fd/{fd}").split("/")[-1].startswith(f"{OWNER_FILE}."):
                self.refused += 1
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_write(fd, data)

        monkeypatch.setattr(os, "write", write)


@pytest.fixture
def full(monkeypatch: pytest.MonkeyPatch) -> Iterator[_FullDiskForOwner]:
    yield _FullDiskForOwner(monkeypatch)


async def _until(condition, what: str, deadline: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while not condition():
        assert loop.time() < end, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


def _tear(store_dir: Path) -> int:
    tail = sorted(store_dir.glob("*.seg"))[-1]
    with tail.open("ab") as f:
        f.write(b"\x17" * 37)  # half a frame that never finished
    return tail.stat().st_size


def test_an_unclaimed_store_repairs_nothing_then_claims_repairs_and_writes(
        store_dir: Path, run, make_event, full: _FullDiskForOwner) -> None:
    async def scenario() -> None:
        full.full = False
        async with EventStore(store_dir) as store:
            kept = [await store.append(make_event(i)) for i in range(3)]
        torn_size = _tear(store_dir)
        full.full = True
        async with EventStore(store_dir, probe_interval=0.01) as store:
            assert full.refused >= 1  # the claim really met ENOSPC
            assert sorted(store_dir.glob("*.seg"))[-1].stat().st_size == torn_size  # no repair without a claim
            assert [e.event_id for e in [x async for x in store.replay()]] == [e.event_id for e in kept]
            with pytest.raises(StoreReadOnly):
                await store.append(make_event(9))
            full.full = False
            await _until(lambda: store.health().state is HealthState.HEALTHY, "the probe to claim and heal")
            assert sorted(store_dir.glob("*.seg"))[-1].stat().st_size < torn_size  # the probe cut the torn tail
            appended = await store.append(make_event(10))
            assert appended.sequence == 4
        async with EventStore(store_dir) as reopened:
            assert [e.sequence for e in [x async for x in reopened.replay()]] == [1, 2, 3, 4]
            assert not reopened.health().damage

    run(scenario())


def test_a_directory_changed_while_unclaimed_fails_instead_of_writing(
        store_dir: Path, run, make_event, full: _FullDiskForOwner) -> None:
    async def scenario() -> None:
        full.full = False
        async with EventStore(store_dir) as store:
            for i in range(3):
                await store.append(make_event(i))
        full.full = True
        async with EventStore(store_dir, probe_interval=0.01) as store:
            assert full.refused >= 1
            grown = _tear(store_dir)  # another writer's bytes land while this store holds no claim
            full.full = False
            await _until(lambda: store.health().state is HealthState.FAILED, "the stale view to be refused")
            assert "reopen" in str(store.health().reasons)
            with pytest.raises(StoreReadOnly):
                await store.append(make_event(9))
            assert sorted(store_dir.glob("*.seg"))[-1].stat().st_size == grown  # nothing written or cut

    run(scenario())


def test_bytes_written_into_allocated_space_while_unclaimed_are_noticed(
        store_dir: Path, run, make_event, full: _FullDiskForOwner) -> None:
    """Another writer appending into space its file already holds (allocated ahead) changes no size: the view
    compares the newest segment's modification time too."""
    async def scenario() -> None:
        full.full = False
        async with EventStore(store_dir) as store:
            for i in range(3):
                await store.append(make_event(i))
        tail = sorted(store_dir.glob("*.seg"))[-1]
        last_end = tail.stat().st_size
        with tail.open("ab") as f:
            f.write(bytes(8192))  # space allocated ahead, unused (as a crash leaves it)
        os.utime(tail, ns=(10**18, 10**18))  # a time no later write can share (mtime ticks are coarse)
        full.full = True
        async with EventStore(store_dir, probe_interval=0.01) as store:
            assert full.refused >= 1
            size = tail.stat().st_size
            with tail.open("r+b") as f:  # another writer's frame lands in the allocated space
                f.seek(last_end)
                f.write(b"\x17" * 100)
            assert tail.stat().st_size == size, "the size changed: this would not test the time"
            full.full = False
            await _until(lambda: store.health().state is HealthState.FAILED, "the stale view to be refused")
            with pytest.raises(StoreReadOnly):
                await store.append(make_event(9))

    run(scenario())
