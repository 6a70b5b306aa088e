"""Appends: gapless sequences, store-set fields, idempotent retries, durable acknowledgement, reopen."""

from __future__ import annotations

import asyncio
import errno
import os
import time
from pathlib import Path
from typing import Any

import pytest

from lighthouse import (
    DuplicateEvent,
    EventNotFound,
    EventStore,
    EventType,
    HealthState,
    InvalidQuery,
    StoreClosed,
    WriteFailed,
)


def test_appends_get_gapless_sequences_from_one_and_store_set_fields(store_dir: Path, run, make_event) -> None:
    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            assert store.head_sequence == 0
            submitted = make_event(0, aggregate_id="order:1")
            single = await store.append(submitted)
            batch = await store.append_batch([make_event(i, aggregate_id="order:1") for i in (1, 2, 3)])
            another = await store.append(make_event(4, aggregate_id="order:2"))
            stored = [single, *batch, another]
            assert [e.sequence for e in stored] == [1, 2, 3, 4, 5]
            assert [e.aggregate_version for e in stored] == [1, 2, 3, 4, 1]
            assert single.client_record() == submitted.client_record()
            assert all(e.recorded_at is not None for e in stored)
            assert [e.recorded_at for e in stored] == sorted(e.recorded_at for e in stored)
            assert len({e.recorded_at for e in batch}) == 1, "one batch is one frame with one recorded_at"
            assert store.head_sequence == 5 and store.stats().events == 5
            for event in stored:
                assert await store.get(event.sequence) == event
                assert await store.get(event.event_id) == event

    run(scenario())


def test_store_assigned_fields_from_the_client_are_ignored(store_dir: Path, run, make_event) -> None:
    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            await store.append(make_event(0))
            forged = make_event(1, sequence=999, recorded_at=1.0, aggregate_version=77)
            stored = await store.append(forged)
            assert (stored.sequence, stored.aggregate_version) == (2, 1)
            assert stored.recorded_at > 1.0
            assert (await store.get(2)) == stored

    run(scenario())


def test_reopen_after_close_keeps_everything(store_dir: Path, run, make_event, read_all) -> None:
    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            first = [await store.append(make_event(i)) for i in range(5)]
            first += await store.append_batch([make_event(i) for i in range(5, 25)])
            health_before = store.health()
        store = await EventStore.open(store_dir)
        try:
            assert await read_all(store) == first
            assert store.head_sequence == 25
            assert store.health().state == health_before.state == HealthState.HEALTHY
            later = await store.append(make_event(25, aggregate_id="order:1"))
            assert later.sequence == 26
            # aggregate versions continue from the log, not from zero
            assert later.aggregate_version == sum(1 for e in first if e.aggregate_id == "order:1") + 1
            assert later.recorded_at >= first[-1].recorded_at
        finally:
            await store.close()
        async with EventStore(store_dir) as store:
            assert await read_all(store) == [*first, later]

    run(scenario())


def test_a_closed_store_refuses_every_call_and_close_is_idempotent(store_dir: Path, run, make_event) -> None:
    async def scenario() -> None:
        store = await EventStore.open(store_dir)
        await store.append(make_event(0))
        await store.close()
        await store.close()
        assert store.closed
        for call in (
            lambda: store.append(make_event(1)),
            lambda: store.append_batch([make_event(2)]),
            lambda: store.get(1),
            lambda: store.query(),
            lambda: store.save_snapshot("p", {}, 1),
        ):
            with pytest.raises(StoreClosed):
                await call()
        with pytest.raises(StoreClosed):
            store.subscribe()
        with pytest.raises(StoreClosed):
            [e async for e in store.replay()]

    run(scenario())


def test_get_of_an_unknown_key_is_not_found_and_a_wrong_key_type_is_invalid(store_dir: Path, run, make_event) -> None:
    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            await store.append(make_event(0))
            for missing in (0, 2, -1, "no-such-id"):
                with pytest.raises(EventNotFound):
                    await store.get(missing)
            for wrong in (1.0, None, True, b"id"):
                with pytest.raises(InvalidQuery):
                    await store.get(wrong)  # type: ignore[arg-type]

    run(scenario())


# ------------------------------------------------------------------------------------------- idempotency


def test_retrying_the_same_event_returns_the_stored_copy(store_dir: Path, run, make_event) -> None:
    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            event = make_event(0)
            stored = await store.append(event)
            await store.append(make_event(1))
            again = await store.append(event)
            assert again == stored
            assert store.head_sequence == 2
        async with EventStore(store_dir) as store:  # also once the original is only on disk
            assert await store.append(event) == stored
            assert store.head_sequence == 2

    run(scenario())


def test_same_event_id_with_different_content_is_a_duplicate(store_dir: Path, run, make_event) -> None:
    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            original = await store.append(make_event(0, event_id="fixed-id"))
            with pytest.raises(DuplicateEvent) as caught:
                await store.append(make_event(1, event_id="fixed-id"))
            assert caught.value.details["event_id"] == "fixed-id"
            assert str(caught.value) == "event fixed-id is already stored with different content"
            assert not caught.value.retryable
            assert store.head_sequence == 1
            assert await store.get("fixed-id") == original

    run(scenario())


def test_a_concurrent_identical_retry_returns_the_same_stored_copy(store_dir: Path, run, make_event) -> None:
    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            event = make_event(0)
            first, second = await asyncio.gather(store.append(event), store.append(event))
            assert first == second
            assert store.head_sequence == 1

    run(scenario())


def test_appending_a_mapping_returns_the_event_that_was_stored(store_dir: Path, run) -> None:
    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            returned = await store.append({"event_type": "custom", "aggregate_id": "order:1", "data": {"a": 1}})
            on_disk = await store.get(1)
            assert returned == on_disk
            assert (await store.get(returned.event_id)).sequence == 1

    run(scenario())


def test_appending_a_complete_mapping_is_accepted(store_dir: Path, run) -> None:
    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            raw = {"event_type": "custom", "aggregate_id": "order:1", "event_id": "m-1", "timestamp": 5.0}
            returned = await store.append(raw)
            assert returned == await store.get("m-1")
            assert returned.event_type is EventType.CUSTOM

    run(scenario())


# ------------------------------------------------------------------------------------ durable acknowledgement


def test_an_append_is_acknowledged_only_after_its_sync(store_dir: Path, run, make_event, gated_store) -> None:
    async def scenario() -> None:
        async with gated_store(store_dir) as store:
            store.gate.clear()
            task = asyncio.create_task(store.append(make_event(0)))
            loop = asyncio.get_running_loop()
            assert await loop.run_in_executor(None, store.sync_entered.wait, 10)
            # The bytes are written but not yet synced: nothing may be acknowledged or visible.
            assert not task.done()
            assert store.head_sequence == 0
            assert store.stats().events == 0
            store.gate.set()
            stored = await task
            assert stored.sequence == 1 and store.head_sequence == 1

    run(scenario())


class _FailingFdatasync:
    """Stands in for ``os.fdatasync``: the next ``failures`` calls report EIO (the store's own code path runs)."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.failures = 0
        self.failed_fds: list[int] = []

    def __call__(self, fd: int) -> None:
        if self.failures:
            self.failures -= 1
            self.failed_fds.append(fd)
            raise OSError(errno.EIO, "Input/output error")
        self.real(fd)


def test_a_failed_sync_acknowledges_nothing_and_leaves_no_frame_behind(
    store_dir: Path, run, make_event, read_all, disk, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing = _FailingFdatasync(os.fdatasync)
    monkeypatch.setattr(os, "fdatasync", failing)

    async def scenario() -> None:
        async with EventStore(store_dir, probe_interval=0.01) as store:
            kept = await store.append(make_event(0))
            segment = disk.last_segment(store_dir)
            size = disk.frames(segment)[-1].end  # the file is allocated further ahead of its last frame
            failing.failures = 1
            with pytest.raises(WriteFailed) as caught:
                await store.append(make_event(1))
            assert caught.value.details["errno"] == "EIO"
            assert failing.failed_fds, "the injected failure did not happen"
            assert os.readlink(f"/proc/self/fd/{failing.failed_fds[0]}") == str(segment.resolve()), (
                "the failure hit another file than the segment")
            assert caught.value.details["outcome"] == "not_written"
            assert segment.stat().st_size == size, "a failed write left a partial frame behind"
            assert await read_all(store) == [kept]
            assert store.health().state == HealthState.READ_ONLY
            assert store.health().voided_sequences == [(2, 2)], "the refused sequence is not reported as voided"

    run(scenario())


def test_concurrent_appends_share_one_sync(store_dir: Path, run, make_event) -> None:
    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            await store.append(make_event(0))
            before = store.stats()
            stored = await asyncio.gather(*(store.append(make_event(i)) for i in range(1, 65)))
            after = store.stats()
            assert sorted(e.sequence for e in stored) == list(range(2, 66))
            groups = after.groups - before.groups
            assert after.fsyncs - before.fsyncs == groups, "one sync per group"
            assert groups < 64, "64 concurrent appends were not grouped at all"

    run(scenario())


def test_write_seconds_sum_the_group_writes(store_dir: Path, run, make_event) -> None:
    """The time spent writing and syncing: zero before any append, growing with them, and never more than the wall
    time they took (groups are written one after another)."""

    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            assert store.write_seconds == store.stats().write_seconds == 0
            started = time.perf_counter()
            for i in range(20):
                await store.append(make_event(i))
            await asyncio.gather(*(store.append(make_event(i)) for i in range(20, 84)))
            wall = time.perf_counter() - started
            stats = store.stats()
            assert stats.write_seconds == store.write_seconds
            assert 0 < stats.write_seconds <= wall
            assert stats.write_seconds >= stats.groups * 1e-6, "each group's write and sync was counted"

    run(scenario())


@pytest.mark.parametrize("durability, durable", [("fsync", True), ("batch", False), ("none", False)])
def test_health_says_whether_acknowledgements_are_durable(store_dir: Path, run, durability: str, durable: bool) -> None:
    async def scenario() -> None:
        async with EventStore(store_dir, durability=durability) as store:  # type: ignore[arg-type]
            health = store.health()
            assert (health.durability, health.durable_acks) == (durability, durable)
            assert health.to_dict()["durable_acks"] is durable

    run(scenario())


def test_durability_none_never_syncs_per_append_but_keeps_data_across_close(
    store_dir: Path, run, make_event, read_all
) -> None:
    async def scenario() -> None:
        async with EventStore(store_dir, durability="none") as store:
            fsyncs = store.stats().fsyncs
            stored = [await store.append(make_event(i)) for i in range(20)]
            assert store.stats().fsyncs == fsyncs
        async with EventStore(store_dir) as store:
            assert await read_all(store) == stored

    run(scenario())


def test_durability_batch_acknowledges_before_syncing_then_syncs_within_the_interval(
    store_dir: Path, run, make_event
) -> None:
    """``batch``: an acknowledgement does not wait for fdatasync, but the periodic flusher syncs soon after."""

    async def scenario() -> None:
        interval = 0.05
        async with EventStore(store_dir, durability="batch", sync_interval=interval) as store:
            loop = asyncio.get_running_loop()
            fsyncs = store.stats().fsyncs
            started = loop.time()
            for i in range(20):
                await store.append(make_event(i))
            # On a busy machine the flusher may tick while the appends run; the append path itself never syncs,
            # so there are at most as many syncs as flusher ticks in the time the appends took (not 20).
            ticks = int((loop.time() - started) / interval) + 1
            assert store.stats().fsyncs - fsyncs <= min(ticks, 19), "batch mode synced on the append path"
            deadline = loop.time() + 60.0  # generous: a load average of 8 on 2 cores delays the flusher's tick
            while store.stats().fsyncs == fsyncs:
                assert loop.time() < deadline, "the periodic flusher never synced"
                await asyncio.sleep(0.01)
            synced = -1
            while store.stats().fsyncs != synced:  # settle: a tick that raced the last append syncs once more
                synced = store.stats().fsyncs
                await asyncio.sleep(4 * interval)
            await asyncio.sleep(0.2)  # idle: nothing new was written, so nothing more to sync
            assert store.stats().fsyncs == synced

    run(scenario(), 120)


@pytest.mark.parametrize("bad", [{"durability": "sometimes"}, {"segment_bytes": 100}])
def test_bad_store_options_are_rejected(store_dir: Path, bad: dict) -> None:
    with pytest.raises(ValueError):
        EventStore(store_dir, **bad)


# ------------------------------------------------------------------------------------------------ rotation


class _CountingDirectorySync(EventStore):
    directory_syncs = 0

    def _sync_directory(self) -> None:
        self.directory_syncs += 1
        super()._sync_directory()


def test_segments_rotate_at_the_size_limit_and_every_event_survives(
    store_dir: Path, run, make_event, read_all, disk
) -> None:
    async def scenario() -> list:
        async with _CountingDirectorySync(store_dir, segment_bytes=4096) as store:
            stored = [await store.append(make_event(i, data={"pad": "p" * 700, "i": i})) for i in range(30)]
            assert store.stats().segments == len(disk.segments(store_dir)) >= 5
            assert store.directory_syncs >= store.stats().segments, "a new segment was used before its dir fsync"
            assert await read_all(store) == stored
            return stored

    stored = run(scenario())
    for segment in disk.segments(store_dir):
        frames = disk.frames(segment)
        assert frames and int(segment.stem) == frames[0].first_seq, "segments are named by their first sequence"
        assert frames[-1].end == segment.stat().st_size

    async def reopen() -> None:
        async with EventStore(store_dir, segment_bytes=4096) as store:
            assert await read_all(store) == stored
            assert (await store.append(make_event(99))).sequence == 31

    run(reopen())


def test_a_store_directory_holds_only_what_the_store_wrote(store_dir: Path, run, make_event) -> None:
    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            await store.append(make_event(0))

    run(scenario())
    names = sorted(p.name for p in store_dir.iterdir())
    assert names == ["00000000000000000001.seg", "LOCK", "OWNER", "index.ckpt"], names  # OWNER: the writer fence; index.ckpt: the checkpoint of close
    assert os.path.getsize(store_dir / "00000000000000000001.seg") > 32
