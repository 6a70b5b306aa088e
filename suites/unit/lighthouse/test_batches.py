"""Batches are one frame: all of it is stored or none of it, after a crash and after a bad input."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from lighthouse import (
    BatchTooLarge,
    DuplicateEvent,
    Event,
    EventNotFound,
    EventStore,
    EventType,
    InvalidEvent,
)
from lighthouse.models import MAX_BATCH_EVENTS


def test_a_batch_is_one_frame_with_consecutive_sequences(store_dir: Path, run, make_event, disk) -> None:
    async def scenario() -> list[Event]:
        async with EventStore(store_dir) as store:
            await store.append(make_event(0))
            return await store.append_batch([make_event(i) for i in range(1, 51)])

    batch = run(scenario())
    assert [e.sequence for e in batch] == list(range(2, 52))
    frames = disk.frames(disk.last_segment(store_dir))
    assert [(f.first_seq, f.count) for f in frames] == [(1, 1), (2, 50)]


def test_a_torn_batch_frame_leaves_none_of_the_batch(tmp_path: Path, run, make_event, disk, read_all) -> None:
    pristine = tmp_path / "pristine"

    async def build() -> tuple[list[Event], list[Event]]:
        async with EventStore(pristine) as store:
            before = [await store.append(make_event(i)) for i in range(3)]
            batch = await store.append_batch([make_event(i) for i in range(3, 53)])
            return before, batch

    before, batch = run(build())
    frame = disk.frames(disk.last_segment(pristine))[-1]
    assert frame.count == 50
    # Cuts from "header only" to "all but the last byte": even 49 complete records of 50 are not a batch.
    cuts = sorted({frame.offset + 1, frame.offset + 28, frame.offset + frame.size // 2, *range(frame.end - 8, frame.end)})

    async def check(directory: Path) -> None:
        async with EventStore(directory) as store:
            assert await read_all(store) == before
            for event in batch:
                with pytest.raises(EventNotFound):
                    await store.get(event.event_id)
            assert (await store.append(make_event(99))).sequence == len(before) + 1

    for cut in cuts:
        directory = disk.copy_store(pristine, tmp_path / f"cut-{cut}")
        disk.truncate(disk.last_segment(directory), cut)
        run(check(directory))


def test_one_invalid_event_rejects_the_whole_batch(store_dir: Path, run, make_event, read_all) -> None:
    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            kept = await store.append(make_event(0))
            good = [make_event(i) for i in range(1, 10)]
            with pytest.raises(InvalidEvent):
                await store.append_batch([*good[:5], make_event(5, data={"bad": {1, 2}}), *good[5:]])
            with pytest.raises(InvalidEvent):
                await store.append_batch([*good, {"event_type": "no_such_type", "aggregate_id": "a"}])  # type: ignore[list-item]
            with pytest.raises(InvalidEvent):
                await store.append_batch([*good, 42])  # type: ignore[list-item]
            assert await read_all(store) == [kept]
            for event in good:
                with pytest.raises(EventNotFound):
                    await store.get(event.event_id)
            assert (await store.append_batch(good))[0].sequence == 2

    run(scenario())


@pytest.mark.parametrize("count", [0, MAX_BATCH_EVENTS + 1])
def test_batch_size_limits(store_dir: Path, run, make_event, read_all, count: int) -> None:
    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            kept = await store.append(make_event(0))
            with pytest.raises(BatchTooLarge) as caught:
                await store.append_batch([make_event(i) for i in range(count)])
            assert caught.value.details["count"] == count
            assert await read_all(store) == [kept]

    run(scenario())


def test_a_batch_of_exactly_the_limit_is_accepted(store_dir: Path, run, make_event) -> None:
    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            stored = await store.append_batch([make_event(i) for i in range(MAX_BATCH_EVENTS)])
            assert len(stored) == MAX_BATCH_EVENTS and store.head_sequence == MAX_BATCH_EVENTS

    run(scenario())


def test_a_batch_over_ten_mebibytes_is_too_large(store_dir: Path, run, make_event, read_all) -> None:
    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            kept = await store.append(make_event(0))
            nearly_a_mebibyte = "z" * (1024 * 1024 - 1024)
            events = [make_event(i, data={"blob": nearly_a_mebibyte}) for i in range(11)]
            with pytest.raises(BatchTooLarge) as caught:
                await store.append_batch(events)
            assert caught.value.details["size"] > 10 * 1024 * 1024
            assert await read_all(store) == [kept]
            stored = await store.append_batch(events[:10])  # each event and ten of them are within limits
            assert len(stored) == 10

    run(scenario())


def test_a_batch_with_a_repeated_event_id_is_invalid(store_dir: Path, run, make_event) -> None:
    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            event = make_event(0)
            with pytest.raises(InvalidEvent):
                await store.append_batch([event, make_event(1), event])
            assert store.head_sequence == 0

    run(scenario())


def test_retrying_a_whole_stored_batch_returns_the_stored_copies(store_dir: Path, run, make_event) -> None:
    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            events = [make_event(i) for i in range(5)]
            stored = await store.append_batch(events)
            assert await store.append_batch(events) == stored
            assert store.head_sequence == 5

    run(scenario())


def test_a_batch_partly_stored_already_is_a_duplicate_and_writes_nothing(
    store_dir: Path, run, make_event, read_all
) -> None:
    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            events = [make_event(i) for i in range(5)]
            stored = await store.append_batch(events[:2])
            with pytest.raises(DuplicateEvent):
                await store.append_batch(events)
            assert await read_all(store) == stored

    run(scenario())


@pytest.mark.parametrize("not_a_batch", ["abc", b"abc", {"event_type": "custom", "aggregate_id": "a"}, 7, None])
def test_a_batch_must_be_a_list(store_dir: Path, run, not_a_batch: object) -> None:
    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            with pytest.raises(InvalidEvent):
                await store.append_batch(not_a_batch)  # type: ignore[arg-type]
            assert store.head_sequence == 0

    run(scenario())


def test_a_non_integer_expected_version_in_a_batch_is_invalid_input(store_dir: Path, run, make_event) -> None:
    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            await store.append(make_event(0, aggregate_id="a:1"))
            with pytest.raises(InvalidEvent):
                await store.append_batch([make_event(1, aggregate_id="a:1")], expected_versions={"a:1": "1"})

    run(scenario())


def test_a_malformed_expected_versions_fails_only_its_own_call(store_dir: Path, run, make_event, read_all) -> None:
    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            bad, good = await asyncio.gather(
                store.append_batch([make_event(0)], expected_versions=5),  # type: ignore[arg-type]
                store.append(make_event(1)),
                return_exceptions=True,
            )
            assert isinstance(bad, InvalidEvent)
            assert isinstance(good, Event) and good.sequence == 1

    run(scenario())


def test_events_of_one_batch_share_recorded_at_and_number_their_aggregate_versions(
    store_dir: Path, run
) -> None:
    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            stored = await store.append_batch(
                [Event(EventType.FILE_MODIFIED, aggregate_id=f"file:{i % 2}") for i in range(6)]
            )
            assert len({e.recorded_at for e in stored}) == 1
            assert [e.aggregate_version for e in stored] == [1, 1, 2, 2, 3, 3]

    run(scenario())


def test_batches_in_one_group_share_an_identical_retry_and_refuse_a_conflicting_one(store_dir: Path, run,
                                                                                   make_event) -> None:
    """Appends queued together are committed as one group: a later batch of the group that repeats an earlier
    one exactly gets its stored copies, one that reuses an id with other content is refused, and one with other
    ids is stored after them."""
    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            original = [make_event(i) for i in range(5)]
            changed = [*original[:2], original[2].replace(data={"other": True})]
            others = [make_event(i) for i in range(5, 8)]
            await store.append(make_event(99))
            groups = store.stats().groups
            first, retry, conflict, after = await asyncio.gather(
                store.append_batch(original), store.append_batch(original), store.append_batch(changed),
                store.append_batch(others), return_exceptions=True)
            assert store.stats().groups == groups + 1  # all four were queued before the writer took them
            assert first == retry and [e.sequence for e in first] == [2, 3, 4, 5, 6]
            assert isinstance(conflict, DuplicateEvent)
            assert [e.sequence for e in after] == [7, 8, 9]
            assert store.head_sequence == 9

    run(scenario())
