"""Queries: every filter, both orders, and cursors that stay correct while the log grows.

Expected results come from a plain predicate over the stored copies written here, not from
``EventFilter.matches``, so a wrong filter in the model and the store cannot agree by accident.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lighthouse import Event, EventFilter, EventStore, EventType, InvalidCursor, InvalidQuery
from lighthouse.index import CHUNK_ROWS, hash_key

TYPES = [EventType.COMMAND_RECEIVED, EventType.COMMAND_APPROVED, EventType.FILE_MODIFIED]
AGGREGATES = ["cmd:1", "cmd:2", "cmd:3", "file:/etc"]
AGENTS = ["alpha", "beta", "gamma"]
CORRELATIONS = [None, "corr-A", "corr-B"]


def _population_events(count: int) -> list[Event]:
    return [
        Event(
            TYPES[i % 3],
            aggregate_id=AGGREGATES[(i // 2) % 4],
            source_agent=AGENTS[(i // 3) % 3],
            correlation_id=CORRELATIONS[(i // 5) % 3],
            event_id=f"evt-{i}",
            data={"i": i},
        )
        for i in range(count)
    ]


async def _write_population(path: Path) -> list[Event]:
    """60 events: singles and batches (so recorded_at has ties), some caused by earlier events."""
    raw = _population_events(60)
    stored: list[Event] = []
    async with EventStore(path) as store:
        i = 0
        for size in itertools.cycle([1, 1, 4, 1, 7, 2]):
            if i >= len(raw):
                break
            chunk = raw[i : i + size]
            chunk = [
                e.replace(causation_id=stored[(i + k) % len(stored)].event_id) if stored and (i + k) % 4 == 0 else e
                for k, e in enumerate(chunk)
            ]
            stored.extend(await store.append_batch(chunk) if len(chunk) > 1 else [await store.append(chunk[0])])
            i += size
    return stored


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Event]]:
    path = tmp_path_factory.mktemp("queries") / "store"
    return path, asyncio.run(_write_population(path))


def expected(events: list[Event], criteria: dict[str, Any], descending: bool = False) -> list[Event]:
    def keep(e: Event) -> bool:
        checks: dict[str, Callable[[Any], bool]] = {
            "event_types": lambda v: str(e.event_type) in {str(t) for t in v},
            "aggregate_ids": lambda v: e.aggregate_id in v,
            "source_agents": lambda v: e.source_agent in v,
            "correlation_id": lambda v: e.correlation_id == v,
            "causation_id": lambda v: e.causation_id == v,
            "from_sequence": lambda v: e.sequence >= v,
            "to_sequence": lambda v: e.sequence <= v,
            "recorded_after": lambda v: e.recorded_at >= v,
            "recorded_before": lambda v: e.recorded_at < v,
        }
        return all(checks[name](value) for name, value in criteria.items())

    out = [e for e in events if keep(e)]
    return out[::-1] if descending else out


async def all_pages(
    store: EventStore, flt: EventFilter | None, limit: int, descending: bool = False
) -> tuple[list[Event], int]:
    collected: list[Event] = []
    cursor = None
    pages = 0
    while True:
        page = await store.query(flt, limit=limit, cursor=cursor, descending=descending)
        pages += 1
        assert len(page.events) <= limit
        collected.extend(page.events)
        cursor = page.next_cursor
        if cursor is None:
            return collected, pages
        assert pages < 10_000, "pagination does not terminate"


CRITERIA = [
    {},
    {"event_types": [EventType.COMMAND_APPROVED]},
    {"event_types": ["command_received", "file_modified"]},
    {"aggregate_ids": ["cmd:2"]},
    {"aggregate_ids": ["cmd:1", "file:/etc"]},
    {"source_agents": ["beta"]},
    {"correlation_id": "corr-B"},
    {"from_sequence": 10, "to_sequence": 25},
    {"to_sequence": 0},
    {"from_sequence": 61},
    {"event_types": ["command_received"], "aggregate_ids": ["cmd:1", "cmd:3"], "source_agents": ["alpha", "gamma"]},
    {"correlation_id": "corr-A", "from_sequence": 20},
    {"aggregate_ids": ["nobody"]},
]


@pytest.mark.parametrize("criteria", CRITERIA, ids=[str(sorted(c)) for c in CRITERIA])
@pytest.mark.parametrize("descending", [False, True], ids=["asc", "desc"])
@pytest.mark.parametrize("limit", [1, 7, 1000])
def test_each_filter_in_both_orders_with_any_page_size(
    population, run, criteria: dict, descending: bool, limit: int
) -> None:
    path, stored = population

    async def scenario() -> None:
        async with EventStore(path) as store:
            got, _ = await all_pages(store, EventFilter(**criteria), limit, descending)
            assert [e.sequence for e in got] == [e.sequence for e in expected(stored, criteria, descending)]
            assert got == expected(stored, criteria, descending)

    run(scenario())


def test_causation_filter_finds_the_events_an_event_caused(population, run) -> None:
    path, stored = population
    causes = {e.causation_id for e in stored if e.causation_id}
    assert len(causes) >= 3

    async def scenario() -> None:
        async with EventStore(path) as store:
            for cause in causes:
                page = await store.query(EventFilter(causation_id=cause))
                assert page.events == expected(stored, {"causation_id": cause})
                assert page.events and (await store.get(cause)).event_id == cause

    run(scenario())


def test_recorded_at_range_is_inclusive_after_and_exclusive_before(population, run) -> None:
    path, stored = population
    stamps = sorted({e.recorded_at for e in stored})
    assert len(stamps) >= 10
    windows = [(stamps[2], stamps[7]), (stamps[0], stamps[1]), (stamps[-1], stamps[-1] + 1), (stamps[5], stamps[5])]

    async def scenario() -> None:
        async with EventStore(path) as store:
            for after, before in windows:
                criteria = {"recorded_after": after, "recorded_before": before}
                for descending in (False, True):
                    got, _ = await all_pages(store, EventFilter(**criteria), 3, descending)
                    assert got == expected(stored, criteria, descending), (after, before)
            only_after = await store.query(EventFilter(recorded_after=stamps[-1]))
            assert only_after.events == expected(stored, {"recorded_after": stamps[-1]})

    run(scenario())


filters = st.fixed_dictionaries(
    {},
    optional={
        "event_types": st.sets(st.sampled_from(TYPES), min_size=1).map(sorted),
        "aggregate_ids": st.sets(st.sampled_from(AGGREGATES), min_size=1).map(sorted),
        "source_agents": st.sets(st.sampled_from(AGENTS), min_size=1).map(sorted),
        "correlation_id": st.sampled_from(CORRELATIONS[1:]),
        "from_sequence": st.integers(0, 65),
        "to_sequence": st.integers(0, 65),
    },
)


@given(criteria=filters, limit=st.integers(1, 70), descending=st.booleans())
@settings(max_examples=60, deadline=None)
def test_any_filter_and_page_size_returns_exactly_the_matching_events(
    population, run, criteria: dict, limit: int, descending: bool
) -> None:
    path, stored = population

    async def scenario() -> None:
        async with EventStore(path) as store:
            got, pages = await all_pages(store, EventFilter(**criteria), limit, descending)
            want = expected(stored, criteria, descending)
            assert got == want
            assert pages <= max(1, -(-len(want) // limit)) + 1

    run(scenario())


def test_ascending_cursor_is_stable_while_appends_continue(store_dir: Path, run, make_event) -> None:
    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            await store.append_batch([make_event(i) for i in range(20)])
            flt = EventFilter(event_types=[EventType.COMMAND_RECEIVED])
            seen: list[int] = []
            cursor = None
            for round_number in itertools.count():
                page = await store.query(flt, limit=4, cursor=cursor)
                seen.extend(e.sequence for e in page.events)
                if page.next_cursor is None:
                    break
                if round_number < 10:  # appends race the reader between pages
                    await store.append_batch([make_event(100 + round_number * 3 + k) for k in range(3)])
                    await store.append(make_event(200, event_type=EventType.CUSTOM))
                cursor = page.next_cursor
            assert round_number >= 10, "the reader caught up before the appends stopped racing it"
            all_received = [e.sequence async for e in store.replay() if e.event_type is EventType.COMMAND_RECEIVED]
            assert seen == all_received, "a page skipped or repeated an event while the log grew"

    run(scenario())


def test_descending_cursor_is_stable_while_appends_continue(store_dir: Path, run, make_event) -> None:
    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            await store.append_batch([make_event(i) for i in range(30)])
            seen: list[int] = []
            page = await store.query(limit=4, descending=True)
            seen.extend(e.sequence for e in page.events)
            while page.next_cursor is not None:
                await store.append(make_event(999))
                page = await store.query(limit=4, descending=True, cursor=page.next_cursor)
                seen.extend(e.sequence for e in page.events)
            assert seen == list(range(30, 0, -1))

    run(scenario())


def test_a_cursor_survives_reopen(store_dir: Path, run, make_event) -> None:
    flt = EventFilter(aggregate_ids=["order:1"])

    async def first_session() -> tuple[list[Event], str | None]:
        async with EventStore(store_dir) as store:
            await store.append_batch([make_event(i) for i in range(30)])
            first = await store.query(flt, limit=3)
            return first.events, first.next_cursor

    async def second_session(head: list[Event], cursor: str | None) -> None:
        async with EventStore(store_dir) as store:
            rest: list[Event] = []
            while cursor is not None:
                page = await store.query(flt, limit=3, cursor=cursor)
                rest.extend(page.events)
                cursor = page.next_cursor
            assert head + rest == (await store.query(flt)).events

    head, cursor = run(first_session())
    assert cursor is not None
    run(second_session(head, cursor))


def _forged(*fields: Any) -> str:
    return base64.urlsafe_b64encode(msgpack.packb(list(fields))).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    ["", "not-a-cursor", "!!!!", "AAAA", _forged(2, 5, False, 0), _forged(1, -3, False, 0), _forged("x"), 17, b"abc"],
    ids=["empty", "words", "non-base64", "zeros", "future-version", "negative", "wrong-shape", "int", "bytes"],
)
def test_garbage_cursors_are_invalid_cursor(population, run, cursor: Any) -> None:
    path, _ = population

    async def scenario() -> None:
        async with EventStore(path) as store:
            with pytest.raises(InvalidCursor):
                await store.query(limit=5, cursor=cursor)

    run(scenario())


def test_a_cursor_only_works_for_the_filter_and_order_it_came_from(population, run) -> None:
    path, _ = population

    async def scenario() -> None:
        async with EventStore(path) as store:
            flt = EventFilter(aggregate_ids=["cmd:1"])
            cursor = (await store.query(flt, limit=2)).next_cursor
            assert cursor is not None
            await store.query(EventFilter(aggregate_ids=["cmd:1"]), limit=2, cursor=cursor)  # an equal filter is fine
            for other_filter, descending in [
                (EventFilter(aggregate_ids=["cmd:2"]), False),
                (EventFilter(), False),
                (EventFilter(aggregate_ids=["cmd:1"], source_agents=["alpha"]), False),
                (flt, True),
            ]:
                with pytest.raises(InvalidCursor):
                    await store.query(other_filter, limit=2, cursor=cursor, descending=descending)

    run(scenario())


@pytest.mark.parametrize("limit", [0, -1, 10_001, True, 1.5, "10", None])
def test_query_limit_must_be_within_bounds(population, run, limit: Any) -> None:
    path, _ = population

    async def scenario() -> None:
        async with EventStore(path) as store:
            with pytest.raises(InvalidQuery):
                await store.query(limit=limit)
            assert len((await store.query(limit=10_000)).events) == 60

    run(scenario())


def test_a_query_filter_must_be_an_event_filter(population, run) -> None:
    path, _ = population

    async def scenario() -> None:
        async with EventStore(path) as store:
            for bad in ({"aggregate_ids": ["x"]}, "cmd:1", 5):
                with pytest.raises(InvalidQuery):
                    await store.query(bad)  # type: ignore[arg-type]

    run(scenario())


def _colliding_pair(limit: int = 400_000) -> tuple[str, str] | None:
    seen: dict[int, str] = {}
    for i in range(limit):
        name = f"agg:{i}"
        key = hash_key(name)
        if key in seen:
            return seen[key], name
        seen[key] = name
    return None


def test_a_hash_collision_in_the_index_never_returns_a_wrong_event(store_dir: Path, run) -> None:
    pair = _colliding_pair()
    if pair is None:
        pytest.skip("the index hash is too wide to force a collision in 400,000 tries")
    first, second = pair
    assert hash_key(first) == hash_key(second) and first != second

    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            stored = await store.append_batch(
                [Event(EventType.CUSTOM, aggregate_id=agg, source_agent=agg) for agg in (first, second) * 3]
            )
            for name in (first, second):
                want = [e for e in stored if e.aggregate_id == name]
                assert (await store.query(EventFilter(aggregate_ids=[name]))).events == want
                assert (await store.query(EventFilter(source_agents=[name]))).events == want
                got, _ = await all_pages(store, EventFilter(aggregate_ids=[name]), 1, descending=True)
                assert got == want[::-1]

    run(scenario())


def test_queries_across_index_chunk_boundaries(store_dir: Path, run, read_all) -> None:
    """More rows than one index chunk: the frozen chunks and the live tail must read as one."""
    total = CHUNK_ROWS + 3_000

    def event(i: int) -> Event:
        return Event(TYPES[i % 3], aggregate_id=AGGREGATES[i % 4], event_id=f"c{i}", source_agent="s", timestamp=0.0)

    async def scenario() -> None:
        async with EventStore(store_dir, durability="none") as store:
            stored: list[Event] = []
            for start in range(0, total, 1000):
                stored.extend(await store.append_batch([event(i) for i in range(start, min(start + 1000, total))]))
        async with EventStore(store_dir) as store:  # rebuilt from disk: the recovery path fills the chunks
            criteria = {"event_types": [EventType.FILE_MODIFIED], "aggregate_ids": ["cmd:2", "cmd:3"]}
            for descending in (False, True):
                got, _ = await all_pages(store, EventFilter(**criteria), 1_500, descending)
                assert got == expected(stored, criteria, descending)
            around = {"from_sequence": CHUNK_ROWS - 5, "to_sequence": CHUNK_ROWS + 5}
            assert (await store.query(EventFilter(**around))).events == expected(stored, around)
            for seq in (1, CHUNK_ROWS, CHUNK_ROWS + 1, total):
                assert await store.get(seq) == stored[seq - 1]
            assert await store.get(f"c{CHUNK_ROWS + 10}") == stored[CHUNK_ROWS + 10]
            assert len(await read_all(store)) == total

    run(scenario(), timeout=60)
