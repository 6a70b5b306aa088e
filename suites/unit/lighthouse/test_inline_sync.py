"""Where a group is synced: a lone append on the event loop (while writes are quick), anything else on the I/O thread."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from lighthouse import EventStore

pytestmark = pytest.mark.ci


class _SyncThreads(EventStore):
    """Records the thread each data sync ran on; ``slow_next`` makes the next write count as slow.

    The budget is generous so that a busy test machine's real sync times do not decide the outcome.
    """

    inline_write_budget_s = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.threads: list[str] = []
        self.slow_next = False
        self.loop_thread = threading.get_ident()  # the test resets it from inside its event loop

    def _sync_file(self, fd: int, *, full: bool = False) -> None:
        super()._sync_file(fd, full=full)
        if not full:
            self.threads.append("loop" if threading.get_ident() == self.loop_thread else "io")

    def _timed_write(self, offset: int, data: bytes) -> None:
        super()._timed_write(offset, data)
        if self.slow_next:
            self._last_write_seconds = self.inline_write_budget_s * 10
            self.slow_next = False


def test_a_lone_append_syncs_on_the_loop_and_a_group_on_the_io_thread(store_dir: Path, run, make_event) -> None:
    async def scenario() -> None:
        async with _SyncThreads(store_dir) as store:
            store.loop_thread = threading.get_ident()
            await store.append(make_event(0))
            await store.append(make_event(1))
            assert store.threads == ["io", "loop"]  # the first write after open is never on the loop
            await store.append_batch([make_event(2), make_event(3)])
            assert store.threads[-1] == "io"  # a batch is never synced on the loop
            await asyncio.gather(*(store.append(make_event(n)) for n in range(4, 12)))
            assert "io" in store.threads[3:]  # appenders that queued up together go to the thread
            assert store.head_sequence == 12
        async with EventStore(store_dir) as reopened:
            assert reopened.head_sequence == 12  # what was synced on the loop is durable like the rest

    run(scenario())


def test_after_a_slow_write_a_lone_append_goes_back_to_the_io_thread(store_dir: Path, run, make_event) -> None:
    async def scenario() -> None:
        async with _SyncThreads(store_dir) as store:
            store.loop_thread = threading.get_ident()
            await store.append(make_event(0))  # the first write after open: on the I/O thread
            store.slow_next = True
            await store.append(make_event(1))  # on the loop, but it took longer than the budget
            await store.append(make_event(2))
            assert store.threads == ["io", "loop", "io"]
            await store.append(make_event(3))  # the thread's write was quick again: back on the loop
            assert store.threads[-1] == "loop"

    run(scenario())


def test_appenders_that_overlap_still_share_syncs_after_lone_appends(store_dir: Path, run, make_event) -> None:
    """A lone appender's append commits in its own task; that shortcut must not turn a burst of concurrent
    appends into one sync each: they queue up and share group syncs as before."""

    async def scenario() -> None:
        async with _SyncThreads(store_dir) as store:
            store.loop_thread = threading.get_ident()
            for n in range(8):
                await store.append(make_event(n))
            assert store.threads[1:] == ["loop"] * 7  # one at a time: each synced on the loop
            before = len(store.threads)
            stored = await asyncio.gather(*(store.append(make_event(n)) for n in range(8, 40)))
            assert [e.sequence for e in stored] == list(range(9, 41))
            burst_syncs = len(store.threads) - before
            assert burst_syncs <= 4, f"32 overlapping appends took {burst_syncs} syncs"
            for n in range(40, 44):  # one at a time again: back to the loop once a group of one went by
                await store.append(make_event(n))
            assert store.threads[-1] == "loop"
        async with EventStore(store_dir) as reopened:
            assert reopened.head_sequence == 44

    run(scenario())
