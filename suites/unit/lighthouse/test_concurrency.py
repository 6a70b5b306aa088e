"""Optimistic concurrency per aggregate: ``expected_version`` must match, or nothing is written."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from lighthouse import ConcurrencyConflict, EventStore, InvalidEvent


def test_expected_version_is_the_aggregates_event_count(store_dir: Path, run, make_event) -> None:
    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            first = await store.append(make_event(0, aggregate_id="cart:1"), expected_version=0)
            second = await store.append(make_event(1, aggregate_id="cart:1"), expected_version=1)
            other = await store.append(make_event(2, aggregate_id="cart:2"), expected_version=0)
            assert [e.aggregate_version for e in (first, second, other)] == [1, 2, 1]

    run(scenario())


@pytest.mark.parametrize("stale", [0, 1, 3, 100])
def test_a_stale_expected_version_is_a_conflict_and_writes_nothing(
    store_dir: Path, run, make_event, read_all, stale: int
) -> None:
    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            before = [await store.append(make_event(i, aggregate_id="cart:1")) for i in range(2)]
            with pytest.raises(ConcurrencyConflict) as caught:
                await store.append(make_event(9, aggregate_id="cart:1"), expected_version=stale)
            assert caught.value.retryable
            assert caught.value.details == {"aggregate_id": "cart:1", "expected": stale, "actual": 2}
            assert await read_all(store) == before
            retried = await store.append(make_event(9, aggregate_id="cart:1"), expected_version=2)
            assert retried.sequence == 3, "a conflict consumed a sequence number"

    run(scenario())


def test_racing_writers_with_the_same_expected_version_exactly_one_wins(
    store_dir: Path, run, make_event, read_all
) -> None:
    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            await store.append(make_event(0, aggregate_id="cart:1"))
            outcomes = await asyncio.gather(
                *(store.append(make_event(i, aggregate_id="cart:1"), expected_version=1) for i in range(1, 21)),
                return_exceptions=True,
            )
            winners = [o for o in outcomes if not isinstance(o, BaseException)]
            losers = [o for o in outcomes if isinstance(o, BaseException)]
            assert len(winners) == 1 and all(isinstance(o, ConcurrencyConflict) for o in losers)
            assert winners[0].aggregate_version == 2
            assert [e.sequence for e in await read_all(store)] == [1, 2]

    run(scenario())


def test_read_modify_write_loop_with_retries_loses_no_update(store_dir: Path, run, make_event, read_all) -> None:
    """The pattern clients use: read the version, append with it, retry on conflict."""

    async def scenario() -> None:
        async with EventStore(store_dir) as store:

            async def increment(worker: int) -> int:
                attempts = 0
                while True:
                    attempts += 1
                    version = sum(1 for e in await read_all(store) if e.aggregate_id == "counter:1")
                    try:
                        await store.append(make_event(worker, aggregate_id="counter:1"), expected_version=version)
                        return attempts
                    except ConcurrencyConflict:
                        continue

            attempts = await asyncio.gather(*(increment(w) for w in range(10)))
            events = await read_all(store)
            assert [e.aggregate_version for e in events] == list(range(1, 11))
            assert sum(attempts) > 10, "no conflict happened, so the retry path was not exercised"

    run(scenario())


def test_batch_expected_versions_cover_every_named_aggregate(store_dir: Path, run, make_event, read_all) -> None:
    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            await store.append(make_event(0, aggregate_id="a:1"))
            ok = await store.append_batch(
                [make_event(1, aggregate_id="a:1"), make_event(2, aggregate_id="b:1"), make_event(3, aggregate_id="a:1")],
                expected_versions={"a:1": 1, "b:1": 0},
            )
            assert [e.aggregate_version for e in ok] == [2, 1, 3]
            before = await read_all(store)
            with pytest.raises(ConcurrencyConflict):
                await store.append_batch(
                    [make_event(4, aggregate_id="a:1"), make_event(5, aggregate_id="b:1")],
                    expected_versions={"a:1": 3, "b:1": 0},  # b:1 is at 1
                )
            assert await read_all(store) == before

    run(scenario())


def test_conflicts_inside_one_commit_group_see_earlier_members(store_dir: Path, run, make_event, read_all) -> None:
    """Two appends queued together: the second must be judged against the first one's new version."""

    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            first, second = await asyncio.gather(
                store.append(make_event(0, aggregate_id="x:1"), expected_version=0),
                store.append(make_event(1, aggregate_id="x:1"), expected_version=1),
            )
            assert (first.aggregate_version, second.aggregate_version) == (1, 2)
            outcomes = await asyncio.gather(
                store.append(make_event(2, aggregate_id="x:1"), expected_version=2),
                store.append(make_event(3, aggregate_id="x:1"), expected_version=2),
                return_exceptions=True,
            )
            assert outcomes[0].aggregate_version == 3
            assert isinstance(outcomes[1], ConcurrencyConflict)
            assert len(await read_all(store)) == 3

    run(scenario())


def test_versions_survive_reopen(store_dir: Path, run, make_event) -> None:
    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            for i in range(3):
                await store.append(make_event(i, aggregate_id="cart:7"))
        async with EventStore(store_dir) as store:
            with pytest.raises(ConcurrencyConflict):
                await store.append(make_event(3, aggregate_id="cart:7"), expected_version=0)
            assert (await store.append(make_event(3, aggregate_id="cart:7"), expected_version=3)).aggregate_version == 4

    run(scenario())


@pytest.mark.parametrize("bad", [-1, "1", 1.0, True, [1]])
def test_a_malformed_expected_version_is_invalid_input(store_dir: Path, run, make_event, bad: object) -> None:
    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            with pytest.raises(InvalidEvent):
                await store.append(make_event(0), expected_version=bad)  # type: ignore[arg-type]
            assert store.head_sequence == 0

    run(scenario())
