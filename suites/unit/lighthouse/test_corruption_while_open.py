"""Bytes damaged under a running store: every read path refuses them, health says so, nothing damaged is served.

The open-time scan cannot see damage that happens later (a failing disk, a stray write by another process). The
read-path checksum in ``lighthouse/segments.py`` is the only guard then. Each test stores an event whose data
holds a long marker string, changes ONE byte of that marker in the segment file while the store is open (a
same-length string: the frame still decodes, so only the checksum can tell), and reads it back by id, by
query, by replay and through a catch-up subscription. Each read must fail with ``StoreCorrupted``, never
return the altered event, and ``health()`` must report the refused read; events in other frames stay readable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from lighthouse import Event, EventFilter, EventStore, StoreCorrupted
from lighthouse.health import HealthState

MARKER = b"M" * 64
DAMAGED = b"N" + MARKER[1:]


async def _stored_with_marker(store: EventStore, make_event: Callable[..., Event]) -> tuple[Event, Event]:
    """One intact event in its own frame, then the marked event in another frame (plus a neighbour)."""
    intact = await store.append(make_event(1, aggregate_id="intact:1"))
    marked = await store.append(make_event(2, aggregate_id="marked:1", data={"marker": MARKER.decode()}))
    await store.append(make_event(3, aggregate_id="after:1"))
    return intact, marked


def _damage_marker(store_dir: Path) -> Path:
    """Change one byte of the marker in place, through a separate file handle, while the store is open."""
    for segment in sorted(store_dir.glob("*.seg")):
        content = segment.read_bytes()
        at = content.find(MARKER)
        if at >= 0:
            with open(segment, "r+b") as handle:
                handle.seek(at)
                handle.write(DAMAGED[:1])
            assert segment.read_bytes()[at : at + len(MARKER)] == DAMAGED, "the damage did not land"
            return segment
    raise AssertionError("the marker is not in any segment: nothing was damaged")


async def _by_id(store: EventStore, marked: Event) -> list[Event]:
    return [await store.get(marked.event_id)]


async def _by_sequence(store: EventStore, marked: Event) -> list[Event]:
    return [await store.get(marked.sequence)]


async def _by_query(store: EventStore, marked: Event) -> list[Event]:
    return list((await store.query(EventFilter(aggregate_ids=["marked:1"]), limit=10)).events)


async def _by_replay(store: EventStore, marked: Event) -> list[Event]:
    return [event async for event in store.replay(1)]


async def _by_subscription(store: EventStore, marked: Event) -> list[Event]:
    received: list[Event] = []
    subscription = store.subscribe(from_sequence=1)
    try:
        async def take() -> None:
            async for event in subscription:
                received.append(event)
                if event.sequence >= marked.sequence + 1:
                    return

        await asyncio.wait_for(take(), 30)
    finally:
        closing = getattr(subscription, "aclose", None)
        if closing is not None:
            await closing()
    return received


READ_PATHS: dict[str, Callable[[EventStore, Event], Awaitable[list[Event]]]] = {
    "get by id": _by_id,
    "get by sequence": _by_sequence,
    "query": _by_query,
    "replay": _by_replay,
    "subscription catch-up": _by_subscription,
}


@pytest.mark.parametrize("read", list(READ_PATHS), ids=list(READ_PATHS))
def test_bytes_damaged_while_open_are_refused_reported_and_never_served(
        read: str, store_dir: Path, run: Any, make_event: Callable[..., Event]) -> None:
    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            intact, marked = await _stored_with_marker(store, make_event)
            assert (await store.get(marked.event_id)).data["marker"] == MARKER.decode()  # readable before
            assert store.health().state == HealthState.HEALTHY
            _damage_marker(store_dir)

            served: list[Event] = []
            with pytest.raises(StoreCorrupted) as refused:
                served = await READ_PATHS[read](store, marked)
            assert not any(e.data.get("marker") == DAMAGED.decode() for e in served), "damaged bytes were served"
            assert refused.value.code == "store_corrupted"

            health = store.health()
            assert health.state == HealthState.DEGRADED, health.to_dict()
            assert "read_checksum" in health.reasons and "failed its checksum" in health.reasons["read_checksum"]
            assert (await store.get(intact.event_id)).event_id == intact.event_id, "intact frames stay readable"

    run(scenario())


def test_damage_in_an_unread_frame_is_not_reported_before_it_is_read(store_dir: Path, run: Any,
                                                                      make_event: Callable[..., Event]) -> None:
    """The report comes from the read that met the damage, not from a guess: health stays healthy until then."""
    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            intact, marked = await _stored_with_marker(store, make_event)
            _damage_marker(store_dir)
            assert (await store.get(intact.event_id)).event_id == intact.event_id
            assert store.health().state == HealthState.HEALTHY
            with pytest.raises(StoreCorrupted):
                await store.get(marked.event_id)
            assert store.health().state == HealthState.DEGRADED

    run(scenario())
