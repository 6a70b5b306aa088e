"""Snapshots: atomic, checksummed, full or incremental, and a snapshot plus later events equals a full replay."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lighthouse import Event, EventStore, EventType, InvalidSnapshot, SnapshotNotFound


def project(state: dict[str, Any], event: Event) -> dict[str, Any]:
    """A small projection of the coordination platform: per command, its latest status and how often it moved."""
    status = dict(state)
    entry = dict(status.get(event.aggregate_id, {"status": None, "moves": 0}))
    entry["status"] = str(event.event_type)
    entry["moves"] += 1
    status[event.aggregate_id] = entry
    if event.event_type is EventType.COMMAND_REJECTED:
        status.pop(event.aggregate_id)  # rejected commands leave the projection (a delta must delete keys)
    return status


def command_events(count: int, offset: int = 0) -> list[Event]:
    kinds = [EventType.COMMAND_RECEIVED, EventType.COMMAND_VALIDATED, EventType.COMMAND_APPROVED,
             EventType.COMMAND_REJECTED, EventType.COMMAND_EXECUTED]  # fmt: skip
    return [
        Event(kinds[(i * 7) % 5], aggregate_id=f"command:{(i * 3) % 11}", data={"i": i}) for i in range(offset, offset + count)
    ]


async def replay_state(store: EventStore, state: dict[str, Any] | None = None, from_sequence: int = 1) -> dict:
    state = dict(state or {})
    async for event in store.replay(from_sequence):
        state = project(state, event)
    return state


def test_a_snapshot_plus_later_events_equals_a_full_replay(store_dir: Path, run) -> None:
    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            await store.append_batch(command_events(40))
            snap_state = await replay_state(store)
            await store.save_snapshot("commands", snap_state, store.head_sequence)
            at_full = store.head_sequence
            await store.append_batch(command_events(25, offset=40))
            await store.save_snapshot("commands", await replay_state(store), store.head_sequence, incremental=True)
            await store.append_batch(command_events(30, offset=65))
        async with EventStore(store_dir) as store:
            snapshot = await store.load_snapshot("commands")
            assert snapshot.at_sequence == 65 > at_full
            assert snapshot.incremental_chain == 1
            rebuilt = await replay_state(store, snapshot.state, snapshot.at_sequence + 1)
            assert rebuilt == await replay_state(store)
            assert len(rebuilt) > 3 and any(v["moves"] > 2 for v in rebuilt.values())

    run(scenario())


def test_incremental_snapshots_store_only_what_changed_and_apply_deletions(store_dir: Path, run) -> None:
    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            await store.append_batch(command_events(10))
            big = {f"key{i}": "v" * 200 for i in range(200)}
            await store.save_snapshot("kv", big, 2)
            changed = dict(big, key1="changed", new_key=[1, 2])
            del changed["key5"]
            delta = await store.save_snapshot("kv", changed, 5, incremental=True)
            assert delta.incremental_chain == 1
            folder = store_dir / "snapshots" / "kv"
            full_file, delta_file = sorted(folder.glob("*.snap"))
            assert delta_file.stat().st_size * 20 < full_file.stat().st_size, "the delta holds more than the change"
            loaded = await store.load_snapshot("kv")
            assert loaded.state == changed and loaded.at_sequence == 5
            assert "key5" not in loaded.state

    run(scenario())


def test_an_incremental_snapshot_must_move_forward_and_needs_a_dict(store_dir: Path, run) -> None:
    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            await store.append_batch(command_events(10))
            await store.save_snapshot("p", {"a": 1}, 6)
            with pytest.raises(InvalidSnapshot):
                await store.save_snapshot("p", {"a": 2}, 6, incremental=True)
            with pytest.raises(InvalidSnapshot):
                await store.save_snapshot("p", [1, 2, 3], 8, incremental=True)
            assert (await store.load_snapshot("p")).state == {"a": 1}

    run(scenario())


def test_snapshot_files_are_replaced_atomically_and_leave_no_temporary_files(store_dir: Path, run) -> None:
    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            await store.append_batch(command_events(5))
            for at in range(1, 6):
                await store.save_snapshot("p", {"at": at}, at)
        folder = store_dir / "snapshots" / "p"
        assert not [p for p in folder.iterdir() if not p.name.endswith(".snap")]
        # A crash mid-write leaves a temporary file behind: it must never be mistaken for a snapshot.
        (folder / ".00000000000000000009.snap.tmp").write_bytes(b"half a snapshot")
        async with EventStore(store_dir) as store:
            assert (await store.load_snapshot("p")).state == {"at": 5}

    run(scenario())


@pytest.mark.parametrize("damage", ["bit-flip", "truncated", "emptied", "bad-magic"])
def test_a_damaged_snapshot_is_skipped_for_the_newest_intact_one(store_dir: Path, run, damage: str) -> None:
    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            await store.append_batch(command_events(10))
            await store.save_snapshot("p", {"version": "old"}, 4)
            await store.save_snapshot("p", {"version": "new"}, 8)
            newest = store_dir / "snapshots" / "p" / f"{8:020d}.snap"
            raw = bytearray(newest.read_bytes())
            if damage == "bit-flip":
                raw[-3] ^= 0x10
            elif damage == "truncated":
                raw = raw[:-5]
            elif damage == "emptied":
                raw = bytearray()
            else:
                raw[0:8] = b"XXXXXXXX"
            newest.write_bytes(bytes(raw))
            loaded = await store.load_snapshot("p")
            assert (loaded.state, loaded.at_sequence) == ({"version": "old"}, 4)
            assert str(newest) in store.health().details["damaged_snapshots"]

    run(scenario())


def test_a_delta_whose_base_is_damaged_is_never_applied_to_the_wrong_base(store_dir: Path, run) -> None:
    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            await store.append_batch(command_events(10))
            await store.save_snapshot("p", {"a": 1, "b": 1}, 2)
            await store.save_snapshot("p", {"a": 2, "b": 2}, 4)
            await store.save_snapshot("p", {"a": 2, "b": 3}, 6, incremental=True)
            base = store_dir / "snapshots" / "p" / f"{4:020d}.snap"
            raw = bytearray(base.read_bytes())
            raw[-2] ^= 1
            base.write_bytes(bytes(raw))
            loaded = await store.load_snapshot("p")
            assert (loaded.state, loaded.at_sequence) == ({"a": 1, "b": 1}, 2)

    run(scenario())


def test_snapshot_validation(store_dir: Path, run) -> None:
    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            await store.append_batch(command_events(3))
            for bad_at in (4, -1, True, "2"):
                with pytest.raises(InvalidSnapshot):
                    await store.save_snapshot("p", {}, bad_at)  # type: ignore[arg-type]
            for bad_name in ("", "../escape", "a/b", ".hidden", "sp ace"):
                with pytest.raises(InvalidSnapshot):
                    await store.save_snapshot(bad_name, {}, 1)
            for unserialisable in ({"s": {1, 2}}, {"o": object()}, {"big": 2**70}):
                with pytest.raises(InvalidSnapshot):
                    await store.save_snapshot("p", unserialisable, 1)
            with pytest.raises(SnapshotNotFound):
                await store.load_snapshot("p")
            assert not (store_dir / "snapshots" / "p").exists() or not list((store_dir / "snapshots" / "p").iterdir())
            assert not (store_dir / "escape").exists()

    run(scenario())


def test_a_state_that_cannot_be_read_back_is_refused_before_writing(store_dir: Path, run) -> None:
    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            await store.append_batch(command_events(3))
            await store.save_snapshot("p", {"ok": 1}, 1)
            with pytest.raises(InvalidSnapshot):
                await store.save_snapshot("p", {(1, 2): "tuple key"}, 2)
            assert (await store.load_snapshot("p")).state == {"ok": 1}

    run(scenario())


def test_retention_keeps_the_newest_full_snapshots_and_their_deltas(store_dir: Path, run) -> None:
    async def scenario() -> None:
        async with EventStore(store_dir, snapshot_keep=2) as store:
            await store.append_batch(command_events(20))
            for at in (2, 4, 6, 8):
                await store.save_snapshot("p", {"at": at}, at)
                await store.save_snapshot("p", {"at": at, "delta": True}, at + 1, incremental=True)
            kept = sorted(int(p.stem) for p in (store_dir / "snapshots" / "p").glob("*.snap"))
            assert kept == [6, 7, 8, 9]
            assert (await store.load_snapshot("p")).state == {"at": 8, "delta": True}

    run(scenario())


@given(
    states=st.lists(
        st.dictionaries(st.sampled_from("abcdefgh"), st.integers(0, 3) | st.text(max_size=3), max_size=8),
        min_size=1,
        max_size=15,
    ),
    incremental=st.lists(st.booleans(), min_size=15, max_size=15),
)
@settings(max_examples=25, deadline=None)
def test_any_sequence_of_full_and_incremental_saves_loads_the_last_state(
    tmp_path_factory: pytest.TempPathFactory, run, states: list[dict], incremental: list[bool]
) -> None:
    directory = tmp_path_factory.mktemp("snap") / "s"

    async def scenario() -> None:
        async with EventStore(directory, snapshot_keep=2) as store:
            await store.append_batch(command_events(len(states)))
            for at, (state, delta) in enumerate(zip(states, incremental), start=1):
                saved = await store.save_snapshot("p", state, at, incremental=delta)
                assert saved.incremental_chain <= 16
                loaded = await store.load_snapshot("p")
                assert (loaded.state, loaded.at_sequence) == (state, at)

    run(scenario())


def test_snapshots_of_the_event_counts_match_a_counter(store_dir: Path, run) -> None:
    """A second projection shape (counts per type) through a reopen, for a non-nested state."""

    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            events = await store.append_batch(command_events(50))
            counts = Counter(str(e.event_type) for e in events)
            await store.save_snapshot("counts", dict(counts), 50)
        async with EventStore(store_dir) as store:
            assert (await store.load_snapshot("counts")).state == dict(counts)

    run(scenario())
