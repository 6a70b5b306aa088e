"""How often the bridge snapshots its state: every N events, but at most once per interval of seconds.

Each snapshot copies the whole state on the event loop and writes it on the I/O thread appends wait for;
at 10,000 events/s "every 10,000 events" was one a second."""

from __future__ import annotations

from pathlib import Path

import pytest

from lighthouse import Event, EventStore, EventType, SnapshotNotFound
from lighthouse.bridge.bridge import BridgeSettings, ValidationBridge
from lighthouse.bridge.projection import BridgeProjection


def custom_events(count: int, offset: int = 0) -> list[Event]:
    return [Event(EventType.CUSTOM, aggregate_id=f"thing:{i % 7}", data={"i": i}) for i in range(offset, offset + count)]


async def feed_twice(store: EventStore, bridge: ValidationBridge) -> None:
    """Two rounds of 30 events; the bridge folds them one by one and awaits any snapshot the first round
    called for before it folds the second, so once the second is applied the first's snapshot is written."""
    for offset in (0, 30):
        await store.append_batch(custom_events(30, offset))
        await bridge.wait_applied(store.head_sequence, timeout=20)


@pytest.mark.parametrize("floor_s, snapshots", [(0.0, True), (3600.0, False)])
def test_snapshots_every_n_events_unless_one_was_taken_within_the_floor(
    store_dir: Path, run, floor_s: float, snapshots: bool
) -> None:
    async def scenario() -> None:
        settings = BridgeSettings(snapshot_every_events=10, snapshot_min_interval_seconds=floor_s)
        async with EventStore(store_dir) as store:
            bridge = ValidationBridge(store, settings=settings)
            await bridge.start()
            try:
                await feed_twice(store, bridge)
                if snapshots:
                    snapshot = await store.load_snapshot(settings.snapshot_name)
                    assert snapshot.at_sequence >= 30
                else:
                    with pytest.raises(SnapshotNotFound):
                        await store.load_snapshot(settings.snapshot_name)
            finally:
                await bridge.stop(snapshot=False)

    run(scenario())


@pytest.mark.parametrize("floor", [-1.0, float("nan"), float("inf"), True, "30"])
def test_a_bad_snapshot_floor_is_refused(floor: object) -> None:
    with pytest.raises(ValueError, match="snapshot_min_interval_seconds"):
        BridgeSettings(snapshot_min_interval_seconds=floor)  # type: ignore[arg-type]


def test_the_state_copy_is_deep_and_equal() -> None:
    projection = BridgeProjection()
    for sequence, event in enumerate(custom_events(5), start=1):
        projection.apply(Event(event.event_type, aggregate_id=event.aggregate_id, data=event.data,
                               sequence=sequence, recorded_at=1.0))
    assert projection.state["agents"], "the events were folded"
    copy = projection.to_state()
    assert copy == projection.state
    next(iter(copy["agents"].values()))["events"] += 100
    copy["agents"]["someone"] = {"events": 1}
    assert "someone" not in projection.state["agents"]
    assert next(iter(projection.state["agents"].values()))["events"] == 5
