"""Subscriptions: catch up from disk, switch to live with no gap and no duplicate, and never grow without bound."""

from __future__ import annotations

import asyncio
import contextlib
import random
from pathlib import Path

import pytest

from lighthouse import (
    Event,
    EventFilter,
    EventStore,
    EventType,
    InvalidQuery,
    StoreClosed,
    SubscriberOverflow,
)
from lighthouse.subscriptions import CATCH_UP_RUN, Subscription


async def wait_until(predicate, what: str, deadline: float = 5.0) -> None:
    """Poll (yielding to the loop) until ``predicate()`` holds; fail after ``deadline`` seconds."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + deadline
    while not predicate():
        if loop.time() > give_up:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0)


async def stop(task: asyncio.Task) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def write_racing(store: EventStore, make_event, count: int, seed: int) -> None:
    """Append ``count`` events as singles and batches of random size, yielding between commits."""
    rng = random.Random(seed)
    written = 0
    while written < count:
        size = min(rng.choice([1, 1, 1, 2, 5, 17]), count - written)
        kinds = [rng.choice([EventType.COMMAND_RECEIVED, EventType.AGENT_HEARTBEAT]) for _ in range(size)]
        events = [make_event(written + k, event_type=kind) for k, kind in enumerate(kinds)]
        if size == 1:
            await store.append(events[0])
        else:
            await store.append_batch(events)
        written += size


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_catch_up_then_live_has_no_gap_and_no_duplicate_while_appends_race(
    store_dir: Path, run, make_event, gated_store, seed: int
) -> None:
    history, live = 300, 400

    async def scenario() -> None:
        async with gated_store(store_dir) as store:
            await write_racing(store, make_event, history, seed)
            subscription = store.subscribe(from_sequence=1)
            writer = asyncio.create_task(write_racing(store, make_event, live, seed + 100))
            in_flight_at_switch = asyncio.get_running_loop().create_future()

            async def hold_a_commit_across_the_switch() -> None:
                # The gate is closed: a commit can be written but not published until the subscriber is live.
                await wait_until(lambda: store.stats().subscribers == 1, "the subscriber to go live")
                await wait_until(store.sync_entered.is_set, "a commit to reach its sync")
                in_flight_at_switch.set_result(store.head_sequence)
                store.gate.set()

            received: list[int] = []
            async for event in subscription:
                received.append(event.sequence)
                if event.sequence == history // 3:
                    # Mid catch-up: let the writer move the head on, then hold its next commit at the sync.
                    await wait_until(lambda: store.head_sequence >= history + 50, "appends during catch-up")
                    store.gate.clear()
                    store.sync_entered.clear()
                    holder = asyncio.create_task(hold_a_commit_across_the_switch())
                if event.sequence == history + live:
                    break
                await asyncio.sleep(0)  # a consumer doing work: lets the writer run between events
            await writer
            await holder
            assert received == list(range(1, history + live + 1))
            assert history + 50 <= in_flight_at_switch.result() < history + live
            await subscription.aclose()

    run(scenario())


def test_a_filtered_subscription_delivers_exactly_the_matching_events(store_dir: Path, run, make_event) -> None:
    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            await write_racing(store, make_event, 100, seed=5)
            flt = EventFilter(event_types=[EventType.AGENT_HEARTBEAT], aggregate_ids=["order:1", "order:2"])
            subscription = store.subscribe(flt, from_sequence=1)
            writer = asyncio.create_task(write_racing(store, make_event, 200, seed=6))
            received: list[Event] = []

            async def consume() -> None:
                async for event in subscription:
                    received.append(event)
                    await asyncio.sleep(0)

            consumer = asyncio.create_task(consume())
            await writer
            everything = [e async for e in store.replay()]
            want = [
                e.sequence
                for e in everything
                if e.event_type is EventType.AGENT_HEARTBEAT and e.aggregate_id in {"order:1", "order:2"}
            ]
            await wait_until(lambda: len(received) >= len(want), "the filtered subscriber to catch up")
            assert [e.sequence for e in received] == want
            await stop(consumer)
            await subscription.aclose()

    run(scenario())


def test_default_subscription_starts_at_new_events(store_dir: Path, run, make_event) -> None:
    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            await store.append_batch([make_event(i) for i in range(5)])
            subscription = store.subscribe()
            first = asyncio.create_task(subscription.__anext__())
            await wait_until(lambda: store.stats().subscribers == 1, "the subscriber to go live")
            appended = await store.append(make_event(5))
            assert (await first).sequence == appended.sequence == 6
            await subscription.aclose()
            assert store.stats().subscribers == 0

    run(scenario())


def test_events_appended_after_subscribe_returns_are_delivered(store_dir: Path, run, make_event) -> None:
    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            await store.append(make_event(0))
            subscription = store.subscribe()
            early = await store.append(make_event(1))
            # Catch-up (not the live buffer) delivers it: it was durable before the first read.
            assert (await subscription.__anext__()).sequence == early.sequence
            later = await store.append(make_event(2))
            assert (await subscription.__anext__()).sequence == later.sequence
            await subscription.aclose()

    run(scenario())


def test_aclose_from_another_task_ends_the_consumer_cleanly(store_dir: Path, run, make_event) -> None:
    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            subscription = store.subscribe(from_sequence=1)
            received: list[int] = []

            async def consume() -> None:
                async for event in subscription:
                    received.append(event.sequence)

            consumer = asyncio.create_task(consume())
            await store.append(make_event(0))
            await wait_until(lambda: received == [1], "the first event")
            await subscription.aclose()
            await asyncio.wait_for(consumer, 5)
            assert store.stats().subscribers == 0

    run(scenario())


def test_from_sequence_beyond_the_head_waits_for_that_sequence(store_dir: Path, run, make_event) -> None:
    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            await store.append(make_event(0))
            subscription = store.subscribe(from_sequence=3)
            first = asyncio.create_task(subscription.__anext__())
            await store.append(make_event(1))
            await store.append(make_event(2))
            assert (await first).sequence == 3
            await subscription.aclose()

    run(scenario())


def test_a_slow_consumer_gets_subscriber_overflow_and_memory_stays_bounded(store_dir: Path, run, make_event) -> None:
    buffer = 8

    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            slow = store.subscribe(buffer_size=buffer)
            fast = store.subscribe()
            first = asyncio.create_task(slow.__anext__())
            fast_received: list[int] = []

            async def consume_fast() -> None:
                async for event in fast:
                    fast_received.append(event.sequence)

            fast_task = asyncio.create_task(consume_fast())
            await wait_until(lambda: store.stats().subscribers == 2, "both subscribers to go live")
            await store.append(make_event(0))
            assert (await first).sequence == 1
            peak_lag = 0
            for i in range(1, 101):  # the slow consumer reads nothing meanwhile
                await store.append(make_event(i))
                peak_lag = max(peak_lag, slow.lag)
            assert peak_lag <= buffer, f"a slow subscriber buffered {peak_lag} events, limit {buffer}"
            with pytest.raises(SubscriberOverflow) as caught:
                await slow.__anext__()
            assert caught.value.retryable
            assert caught.value.details["resume_from"] == 2
            # Resuming from where it stopped loses nothing.
            resumed = store.subscribe(from_sequence=caught.value.details["resume_from"])
            again = [(await resumed.__anext__()).sequence for _ in range(100)]
            assert again == list(range(2, 102))
            await resumed.aclose()
            # The fast subscriber and the writer never noticed.
            await wait_until(lambda: len(fast_received) == 101, "the fast subscriber")
            assert fast_received == list(range(1, 102))
            await stop(fast_task)
            await fast.aclose()
            assert store.stats().subscribers == 0

    run(scenario())


def test_closing_the_store_ends_live_subscribers_with_store_closed(store_dir: Path, run, make_event) -> None:
    async def scenario() -> None:
        store = await EventStore.open(store_dir)
        subscription = store.subscribe()
        waiting = asyncio.create_task(subscription.__anext__())
        await wait_until(lambda: store.stats().subscribers == 1, "the subscriber to go live")
        await store.close()
        with pytest.raises(StoreClosed):
            await waiting

    run(scenario())


def test_a_subscription_after_reopen_replays_everything_in_order(store_dir: Path, run, make_event) -> None:
    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            await write_racing(store, make_event, 50, seed=9)
        async with EventStore(store_dir) as store:
            subscription = store.subscribe(from_sequence=1)
            got = [(await subscription.__anext__()).sequence for _ in range(50)]
            assert got == list(range(1, 51))
            assert isinstance(subscription, Subscription) and subscription.last_sequence == 50
            await subscription.aclose()

    run(scenario())


@pytest.mark.parametrize("bad", ["1", 1.5, True])
def test_subscribe_rejects_a_malformed_from_sequence(store_dir: Path, run, bad: object) -> None:
    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            with pytest.raises(InvalidQuery):
                store.subscribe(from_sequence=bad)  # type: ignore[arg-type]

    run(scenario())


@pytest.mark.parametrize("seed", [7, 8])
def test_runs_deliver_the_same_stream_in_lists_catch_up_and_live(store_dir: Path, run, make_event, seed: int) -> None:
    history, live = CATCH_UP_RUN + 300, 500

    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            await write_racing(store, make_event, history, seed)
            by_event, in_runs = store.subscribe(from_sequence=1), store.subscribe(from_sequence=1)
            writer = asyncio.create_task(write_racing(store, make_event, live, seed + 100))
            one_by_one: list[int] = []
            runs: list[list[int]] = []

            async def read_each() -> None:
                async for event in by_event:
                    one_by_one.append(event.sequence)
                    assert by_event.last_sequence == event.sequence
                    if event.sequence == history + live:
                        return

            async def read_runs() -> None:
                async for events in in_runs.runs():
                    runs.append([e.sequence for e in events])
                    assert in_runs.last_sequence == events[-1].sequence and in_runs.lag == 0
                    if events[-1].sequence == history + live:
                        return

            await asyncio.gather(writer, read_each(), read_runs())
            everything = list(range(1, history + live + 1))
            assert one_by_one == everything and [s for r in runs for s in r] == everything
            assert in_runs.delivered == by_event.delivered == history + live
            assert max(len(r) for r in runs) == CATCH_UP_RUN  # catch-up read in lists of at most that many
            assert any(len(r) > 1 for r in runs if r[0] > history)  # and the live part came as lists too
            with pytest.raises(RuntimeError, match="event by event"):
                by_event.runs()
            with pytest.raises(RuntimeError, match="in runs"):
                aiter(in_runs)
            await by_event.aclose()
            await in_runs.aclose()
            assert store.stats().subscribers == 0

    run(scenario())


def test_lag_counts_what_a_one_by_one_reader_has_not_taken_yet(store_dir: Path, run, make_event) -> None:
    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            subscription = store.subscribe()
            first = asyncio.create_task(subscription.__anext__())
            await wait_until(lambda: store.stats().subscribers == 1, "the subscriber to go live")
            await store.append_batch([make_event(i) for i in range(5)])
            assert (await first).sequence == 1
            assert subscription.lag == 4  # four events of that commit are still to be taken
            await store.append(make_event(5))
            assert subscription.lag == 5
            assert [(await subscription.__anext__()).sequence for _ in range(5)] == [2, 3, 4, 5, 6]
            assert subscription.lag == 0
            await subscription.aclose()

    run(scenario())


def test_a_one_by_one_reader_overflows_at_its_buffer_size_counting_the_list_it_is_in(
        store_dir: Path, run, make_event) -> None:
    """The list a one-by-one reader is working through was taken out of the buffer: it still counts, or a
    slow reader could fall twice its buffer behind before being told to resubscribe."""
    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            subscription = store.subscribe(buffer_size=8)
            first = asyncio.create_task(subscription.__anext__())
            await wait_until(lambda: store.stats().subscribers == 1, "the subscriber to go live")
            await store.append_batch([make_event(i) for i in range(8)])
            assert (await first).sequence == 1 and subscription.lag == 7  # seven of its list still to read
            await store.append(make_event(8))  # held: eight events now wait for the reader, as many as allowed
            assert subscription.lag == 8
            await store.append(make_event(9))  # one more than the reader may fall behind
            with pytest.raises(SubscriberOverflow) as overflow:
                while True:
                    await subscription.__anext__()
            assert overflow.value.details["resume_from"] == 9  # the list it was in was delivered in full
            await subscription.aclose()

    run(scenario())


def test_a_commit_is_buffered_whole_when_it_fits_and_overflows_when_one_event_does_not(
        store_dir: Path, run, make_event) -> None:
    """A commit's events go into the buffer in one step when all are wanted and fit; one event more than the
    buffer holds overflows it, as when they were buffered one by one."""
    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            fits, too_many = store.subscribe(buffer_size=8), store.subscribe(buffer_size=7)
            runs = [asyncio.create_task(anext(s.runs())) for s in (fits, too_many)]
            await wait_until(lambda: store.stats().subscribers == 2, "the subscribers to go live")
            await store.append_batch([make_event(i) for i in range(8)])
            assert [e.sequence for e in await runs[0]] == list(range(1, 9))
            with pytest.raises(SubscriberOverflow):
                await runs[1]
            await fits.aclose()
            await too_many.aclose()

    run(scenario())
