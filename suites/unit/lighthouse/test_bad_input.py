"""Bad input: every malformed call gets a clear typed error, and nothing already stored is lost or changed."""

from __future__ import annotations

import asyncio
import datetime
import decimal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest

from lighthouse import (
    BatchTooLarge,
    Event,
    EventStore,
    EventTooLarge,
    EventType,
    HealthState,
    InvalidCursor,
    InvalidEvent,
    InvalidQuery,
    InvalidSnapshot,
    LighthouseError,
)
from lighthouse.models import MAX_BATCH_BYTES, MAX_EVENT_BYTES

BadCall = Callable[[EventStore], Awaitable[Any]]


def nested_lists(depth: int) -> list:
    root: list = []
    current = root
    for _ in range(depth):
        child: list = []
        current.append(child)
        current = child
    return root


def nested_dicts(depth: int) -> dict:
    root: dict = {}
    current = root
    for _ in range(depth):
        current["d"] = {}
        current = current["d"]
    return root


def self_referencing() -> dict:
    data: dict = {"name": "loop"}
    data["self"] = data
    return data


def event(**data: Any) -> Event:
    return Event(EventType.CUSTOM, aggregate_id="bad:1", data=data)


def mapping(**overrides: Any) -> dict[str, Any]:
    return {"event_type": "custom", "aggregate_id": "bad:1", "event_id": "bad-id", **overrides}


async def _drain_replay(store: EventStore, **kwargs: Any) -> None:
    async for _ in store.replay(**kwargs):
        pass


BAD_CALLS: dict[str, tuple[type[LighthouseError], BadCall]] = {
    # size
    "oversized-event": (EventTooLarge, lambda s: s.append(event(blob="x" * MAX_EVENT_BYTES))),
    "oversized-metadata": (
        EventTooLarge,
        lambda s: s.append(Event(EventType.CUSTOM, aggregate_id="a", metadata={"m": b"\0" * (MAX_EVENT_BYTES + 1)})),
    ),
    "oversized-event-in-batch": (EventTooLarge, lambda s: s.append_batch([event(), event(blob="x" * MAX_EVENT_BYTES)])),
    "empty-batch": (BatchTooLarge, lambda s: s.append_batch([])),
    "batch-of-1001": (BatchTooLarge, lambda s: s.append_batch([event(i=i) for i in range(1001)])),
    "batch-over-10MiB": (
        BatchTooLarge,
        lambda s: s.append_batch([event(blob="y" * (MAX_EVENT_BYTES - 2048)) for _ in range(11)]),
    ),
    # not serialisable
    "set-value": (InvalidEvent, lambda s: s.append(event(tags={"a", "b"}))),
    "object-value": (InvalidEvent, lambda s: s.append(event(thing=object()))),
    "datetime-value": (InvalidEvent, lambda s: s.append(event(at=datetime.datetime.now()))),
    "decimal-value": (InvalidEvent, lambda s: s.append(event(price=decimal.Decimal("1.10")))),
    "complex-value": (InvalidEvent, lambda s: s.append(event(z=1j))),
    "int-beyond-64-bits": (InvalidEvent, lambda s: s.append(event(n=2**64))),
    "lone-surrogate": (InvalidEvent, lambda s: s.append(event(text="\ud800"))),
    "tuple-dict-key": (InvalidEvent, lambda s: s.append(event(table={(1, 2): "cell"}))),
    "datetime-in-metadata": (
        InvalidEvent,
        lambda s: s.append(Event(EventType.CUSTOM, aggregate_id="a", metadata={"at": datetime.date.today()})),
    ),
    "nested-lists-10000": (InvalidEvent, lambda s: s.append(event(deep=nested_lists(10_000)))),
    "nested-dicts-10000": (InvalidEvent, lambda s: s.append(event(deep=nested_dicts(10_000)))),
    "self-referencing": (InvalidEvent, lambda s: s.append(event(loop=self_referencing()))),
    "unserialisable-in-batch": (InvalidEvent, lambda s: s.append_batch([event(), event(bad={1})])),
    "tuple-dict-key-in-batch": (InvalidEvent, lambda s: s.append_batch([event(), event(table={(1, 2): "cell"})])),
    # wrong types and unknown names, through the mapping form clients send
    "not-an-event-int": (InvalidEvent, lambda s: s.append(42)),
    "not-an-event-str": (InvalidEvent, lambda s: s.append("custom")),
    "not-an-event-none": (InvalidEvent, lambda s: s.append(None)),
    "not-an-event-list": (InvalidEvent, lambda s: s.append(["custom", "a"])),
    "unknown-event-type": (InvalidEvent, lambda s: s.append(mapping(event_type="launch_missiles"))),
    "event-type-int": (InvalidEvent, lambda s: s.append(mapping(event_type=3))),
    "unknown-field": (InvalidEvent, lambda s: s.append(mapping(priority="high"))),
    "missing-aggregate": (InvalidEvent, lambda s: s.append({"event_type": "custom"})),
    "aggregate-id-int": (InvalidEvent, lambda s: s.append(mapping(aggregate_id=12))),
    "aggregate-id-empty": (InvalidEvent, lambda s: s.append(mapping(aggregate_id=""))),
    "aggregate-type-list": (InvalidEvent, lambda s: s.append(mapping(aggregate_type=["x"]))),
    "event-id-float": (InvalidEvent, lambda s: s.append(mapping(event_id=1.5))),
    "correlation-id-dict": (InvalidEvent, lambda s: s.append(mapping(correlation_id={}))),
    "causation-id-bytes": (InvalidEvent, lambda s: s.append(mapping(causation_id=b"x"))),
    "source-agent-none": (InvalidEvent, lambda s: s.append(mapping(source_agent=None))),
    "timestamp-text": (InvalidEvent, lambda s: s.append(mapping(timestamp="2024-05-01T00:00:00Z"))),
    "timestamp-nan": (InvalidEvent, lambda s: s.append(mapping(timestamp=float("nan")))),
    "data-list": (InvalidEvent, lambda s: s.append(mapping(data=[1, 2, 3]))),
    "metadata-string": (InvalidEvent, lambda s: s.append(mapping(metadata="m"))),
    "schema-version-zero": (InvalidEvent, lambda s: s.append(mapping(schema_version=0))),
    "schema-version-text": (InvalidEvent, lambda s: s.append(mapping(schema_version="2"))),
    "batch-not-a-list": (InvalidEvent, lambda s: s.append_batch(event())),
    "batch-with-int": (InvalidEvent, lambda s: s.append_batch([event(), 5])),
    "batch-repeated-id": (InvalidEvent, lambda s: s.append_batch([mapping(), mapping()])),
    "expected-version-negative": (InvalidEvent, lambda s: s.append(event(), expected_version=-1)),
    "expected-version-text": (InvalidEvent, lambda s: s.append(event(), expected_version="3")),
    # reads
    "get-float": (InvalidQuery, lambda s: s.get(1.5)),
    "get-none": (InvalidQuery, lambda s: s.get(None)),
    "query-limit-zero": (InvalidQuery, lambda s: s.query(limit=0)),
    "query-limit-huge": (InvalidQuery, lambda s: s.query(limit=10**9)),
    "query-filter-dict": (InvalidQuery, lambda s: s.query({"aggregate_ids": ["a"]})),
    "query-garbage-cursor": (InvalidCursor, lambda s: s.query(cursor="definitely-not-a-cursor")),
    "query-forged-cursor": (
        InvalidCursor,
        lambda s: s.query(cursor=msgpack.packb([1, 5, False, 0]).hex()),
    ),
    "replay-negative": (InvalidQuery, lambda s: _drain_replay(s, from_sequence=-5)),
    "replay-text": (InvalidQuery, lambda s: _drain_replay(s, from_sequence="1")),
    "snapshot-unserialisable": (InvalidSnapshot, lambda s: s.save_snapshot("p", {"s": {1}}, 1)),
    "snapshot-future-sequence": (InvalidSnapshot, lambda s: s.save_snapshot("p", {}, 10**6)),
    "snapshot-path-name": (InvalidSnapshot, lambda s: s.save_snapshot("../../etc", {}, 1)),
}


@pytest.fixture
def populated(store_dir: Path, run, make_event) -> tuple[Path, list[Event]]:
    async def build() -> list[Event]:
        async with EventStore(store_dir) as store:
            singles = [await store.append(make_event(i)) for i in range(4)]
            return [*singles, *await store.append_batch([make_event(i) for i in range(4, 10)])]

    return store_dir, run(build())


@pytest.mark.parametrize("name", list(BAD_CALLS))
def test_bad_input_gets_a_typed_error_and_loses_nothing(populated, run, make_event, name: str) -> None:
    path, stored = populated
    error_type, bad_call = BAD_CALLS[name]

    async def scenario() -> None:
        async with EventStore(path) as store:
            with pytest.raises(error_type) as caught:
                await bad_call(store)
            error = caught.value
            assert isinstance(error, LighthouseError)
            assert error.code and error.message and not error.retryable
            assert [e async for e in store.replay()] == stored
            assert store.head_sequence == len(stored)
            assert store.health().state == HealthState.HEALTHY
            fresh = await store.append(make_event(100))
            assert fresh.sequence == len(stored) + 1, "a rejected call consumed a sequence number"
        async with EventStore(path) as store:
            assert [e async for e in store.replay()] == [*stored, fresh]

    run(scenario())


def test_the_event_size_limit_is_exact(store_dir: Path, run) -> None:
    """An event encoding to exactly 1 MiB is stored; one byte more is EventTooLarge."""

    def padded(pad: int) -> Event:
        return Event(EventType.CUSTOM, aggregate_id="a", event_id="size", timestamp=1.0, data={"p": "x" * pad})

    def encoded(e: Event) -> int:
        return len(msgpack.packb(e.client_record(), use_bin_type=True))

    overhead = encoded(padded(100_000)) - 100_000  # str32 header from here on: size grows byte for byte
    exact = padded(MAX_EVENT_BYTES - overhead)
    assert encoded(exact) == MAX_EVENT_BYTES

    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            with pytest.raises(EventTooLarge) as caught:
                await store.append(padded(MAX_EVENT_BYTES - overhead + 1))
            assert caught.value.details == {"event_id": "size", "size": MAX_EVENT_BYTES + 1, "limit": MAX_EVENT_BYTES}
            assert store.head_sequence == 0
            stored = await store.append(exact)
            assert stored.sequence == 1
        async with EventStore(store_dir) as store:
            assert len((await store.get(1)).data["p"]) == MAX_EVENT_BYTES - overhead

    run(scenario())


def test_a_batch_at_the_byte_limit_is_accepted(store_dir: Path, run) -> None:
    per_event = MAX_BATCH_BYTES // 10

    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            events = [
                Event(EventType.CUSTOM, aggregate_id="a", data={"p": "x" * (per_event - 200)}) for _ in range(10)
            ]
            assert sum(len(msgpack.packb(e.client_record(), use_bin_type=True)) for e in events) <= MAX_BATCH_BYTES
            assert len(await store.append_batch(events)) == 10

    run(scenario())


def test_a_bad_call_racing_good_appends_does_not_disturb_them(populated, run, make_event) -> None:
    path, stored = populated

    async def scenario() -> None:
        async with EventStore(path) as store:
            outcomes = await asyncio.gather(
                store.append(make_event(50)),
                store.append(event(bad={1, 2})),
                store.append_batch([make_event(51), make_event(52)]),
                store.append(event(blob="x" * MAX_EVENT_BYTES)),
                return_exceptions=True,
            )
            assert isinstance(outcomes[1], InvalidEvent) and isinstance(outcomes[3], EventTooLarge)
            assert outcomes[0].sequence == 11 and [e.sequence for e in outcomes[2]] == [12, 13]
            assert store.head_sequence == 13

    run(scenario())
