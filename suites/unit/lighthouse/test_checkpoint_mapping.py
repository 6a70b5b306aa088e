"""A loaded index checkpoint is mapped, not read: the mapping must be gone once the store is closed.

A mapping left behind would keep the checkpoint's filesystem busy (a power-cut campaign could not
unmount it) and hold a replaced checkpoint's disk space. ``/proc/self/maps`` shows what this process
has mapped, so these tests look there: the checkpoint is mapped while the store is open from it,
and nothing of it is after close, even with a replay suspended in the middle of the mapped index,
after a periodic checkpoint replaced the mapped file, or when the checkpoint was damaged.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from lighthouse import EventStore
from lighthouse.checkpoint import CHECKPOINT_NAME
from lighthouse.errors import StoreClosed
from lighthouse.index import CHUNK_ROWS

pytestmark = [
    pytest.mark.ci,
    pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc/self/maps to see mappings"),
]


def _mapped(path: Path) -> list[str]:
    """This process's mappings of files in ``path`` (a replaced file shows as "... (deleted)")."""
    return [line for line in Path("/proc/self/maps").read_text().splitlines() if f"{path}/{CHECKPOINT_NAME}" in line]


def _fill(run, path: Path, make_event, events: int) -> None:
    async def fill() -> None:
        async with EventStore(path, checkpoint_every=0) as store:
            for start in range(0, events, 1000):
                await store.append_batch([make_event(n) for n in range(start, min(start + 1000, events))])

    run(fill(), timeout=120)


def test_the_checkpoint_is_unmapped_on_close_even_with_a_replay_suspended_in_it(store_dir: Path, run, make_event) -> None:
    events = CHUNK_ROWS + 3000  # more than one chunk: the replay stops inside the mapped part
    _fill(run, store_dir, make_event, events)
    assert _mapped(store_dir) == []

    async def scenario() -> None:
        store = await EventStore.open(store_dir, checkpoint_every=0)
        assert store.health().details["checkpoint"]["loaded_rows"] == events
        assert _mapped(store_dir), "open from a checkpoint maps it"
        replay = store.replay()
        first = [await anext(replay) for _ in range(10)]
        assert [e.sequence for e in first] == list(range(1, 11))
        assert (await store.get(events)).sequence == events  # reads go through the mapped index
        await store.close()
        assert _mapped(store_dir) == [], "a closed store leaves nothing mapped"
        with pytest.raises(StoreClosed):
            async for _ in replay:
                pass

    run(scenario())


def test_a_checkpoint_replaced_while_mapped_is_unmapped_on_close(store_dir: Path, run, make_event) -> None:
    _fill(run, store_dir, make_event, 500)

    async def scenario() -> None:
        async with EventStore(store_dir, checkpoint_every=100) as store:
            mapped_inode = store_dir.joinpath(CHECKPOINT_NAME).stat().st_ino
            await store.append_batch([make_event(n) for n in range(500, 700)])
            if store._checkpoint_task is not None:
                await store._checkpoint_task
            assert store.health().details["checkpoint"]["written"] >= 1
            assert store_dir.joinpath(CHECKPOINT_NAME).stat().st_ino != mapped_inode
            assert any(line.endswith("(deleted)") for line in _mapped(store_dir)), "the old file is still mapped"
            assert (await store.get(1)).sequence == 1 and (await store.get(700)).sequence == 700
        assert _mapped(store_dir) == []

    run(scenario())


def _flip_a_body_bit(path: Path) -> None:
    checkpoint = path / CHECKPOINT_NAME
    raw = bytearray(checkpoint.read_bytes())
    raw[-100] ^= 1  # in the body: only the checksum can tell
    checkpoint.write_bytes(bytes(raw))


def _touch_the_first_segment(path: Path) -> None:
    first = sorted(path.glob("*.seg"))[0]
    os.utime(first, ns=(time.time_ns(), time.time_ns()))  # a covered, closed segment changed since


@pytest.mark.parametrize(
    ("spoil", "reason"),
    [
        pytest.param(_flip_a_body_bit, "checksum mismatch", id="damaged"),
        pytest.param(_touch_the_first_segment, "stale: segment", id="stale"),
    ],
)
def test_an_unusable_checkpoint_is_unmapped_at_once(store_dir: Path, run, make_event, spoil, reason) -> None:
    async def fill() -> None:
        async with EventStore(store_dir, checkpoint_every=0, segment_bytes=16384) as store:
            for start in range(0, 500, 100):
                await store.append_batch([make_event(n) for n in range(start, start + 100)])

    run(fill())
    assert len(list(store_dir.glob("*.seg"))) >= 2
    spoil(store_dir)

    async def scenario() -> None:
        async with EventStore(store_dir, checkpoint_every=0, segment_bytes=16384) as store:
            assert reason in store.health().details["checkpoint"]["ignored"]
            assert _mapped(store_dir) == []
            assert store.stats().events == 500

    run(scenario())
