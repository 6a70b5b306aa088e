"""Recovery on open: a torn tail is a crash (truncate it), a bad frame followed by good ones is corruption
(never truncate it away; keep every intact record, quarantine and report the damage, keep appending).

Each test damages real segment files with its own byte-level tools and proves the damage is on disk
before judging what the reopened store does with it.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lighthouse import Event, EventFilter, EventNotFound, EventStore, EventType, HealthState
from testkit.faults import append_garbage

async def fill(
    path: Path, batch_sizes: list[int], *, data_bytes: int = 40, tiny: bool = False, **options: object
) -> list[Event]:
    """Write one frame per entry (a single append for 1, a batch otherwise); returns the stored copies.

    ``tiny`` makes each event as small as the model allows, so that a test visiting every byte
    offset of a frame stays fast.
    """
    stored: list[Event] = []
    async with EventStore(path, **options) as store:  # type: ignore[arg-type]
        for frame_number, size in enumerate(batch_sizes):
            events = [
                Event(EventType.CUSTOM, aggregate_id="a", event_id=f"e{frame_number}.{slot}", source_agent="s")
                if tiny
                else Event(
                    EventType.COMMAND_RECEIVED,
                    aggregate_id=f"command:{frame_number}",
                    source_agent="agent-a",
                    data={"frame": frame_number, "slot": slot, "pad": "x" * data_bytes},
                )
                for slot in range(size)
            ]
            if size == 1:
                stored.append(await store.append(events[0]))
            else:
                stored.extend(await store.append_batch(events))
    return stored


def client_events(events: list[Event]) -> list[Event]:
    """The events clients wrote: without the ``corruption_detected`` records the store adds about damage."""
    return [e for e in events if e.event_type is not EventType.CORRUPTION_DETECTED]


async def assert_readable(store: EventStore, expected: list[Event]) -> None:
    """Every expected event is readable by sequence, by id, by query and by replay, and no other client event is."""
    for event in expected:
        assert await store.get(event.sequence) == event
        assert await store.get(event.event_id) == event
    assert client_events([e async for e in store.replay()]) == expected
    page = await store.query(limit=10_000)
    assert client_events(page.events) == expected


async def append_next(store: EventStore, floor: int) -> Event:
    """Append one event: it takes the next sequence, above ``floor`` (every sequence used before the damage)."""
    head = store.head_sequence
    assert head >= floor, f"head {head} went below {floor}: sequences would be reused"
    fresh = await store.append(Event(EventType.CUSTOM, aggregate_id="after:damage"))
    assert fresh.sequence == head + 1
    return fresh


async def assert_absent(store: EventStore, events: list[Event]) -> None:
    for event in events:
        with pytest.raises(EventNotFound):
            await store.get(event.event_id)
        with pytest.raises(EventNotFound):
            await store.get(event.sequence)


# ---------------------------------------------------------------------------------------------- torn tails


@pytest.mark.parametrize("last_frame_events", [1, 3], ids=["single-append", "batch-of-3"])
def test_torn_tail_at_every_byte_offset_of_the_last_frame(tmp_path: Path, run, disk, last_frame_events: int) -> None:
    pristine = tmp_path / "pristine"
    stored = run(fill(pristine, [1, 2, 1, last_frame_events], tiny=True))
    kept, torn = stored[:-last_frame_events], stored[-last_frame_events:]
    segment = disk.last_segment(pristine)
    last = disk.frames(segment)[-1]
    assert (last.first_seq, last.count, last.end) == (torn[0].sequence, last_frame_events, segment.stat().st_size)

    async def check(directory: Path, cut: int) -> None:
        async with EventStore(directory) as store:
            assert store.head_sequence == len(kept), cut
            assert store.stats().events == len(kept)
            await assert_readable(store, kept)
            await assert_absent(store, torn)
            health = store.health()
            assert health.state == HealthState.HEALTHY, (cut, health.reasons)
            assert health.lost_sequences == []
            assert store.stats().torn_tail_bytes_truncated == cut - last.offset
            assert disk.last_segment(directory).stat().st_size == last.offset, "torn bytes were not truncated"
            fresh = await store.append(Event(EventType.CUSTOM, aggregate_id="after:crash", event_id=f"fresh{cut}"))
            assert fresh.sequence == len(kept) + 1
        async with EventStore(directory) as store:  # the new append must not sit on top of torn bytes
            await assert_readable(store, [*kept, fresh])
            assert store.health().state == HealthState.HEALTHY

    for cut in range(last.offset, last.end):
        directory = disk.copy_store(pristine, tmp_path / f"cut-{cut}")
        disk.truncate(disk.last_segment(directory), cut)
        assert disk.last_segment(directory).stat().st_size == cut
        run(check(directory, cut))


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x00" * 4096 + b"\x01",  # all zeros would be unused allocated space (test_preallocation)
        bytes(random.Random(7).getrandbits(8) for _ in range(1000)),
        b"LHF1" + b"\xff" * 60,
        b"LHF1" + (30).to_bytes(4, "little") + b"\x00" * 20,
    ],
    ids=["zeros-then-a-byte", "random", "magic-then-junk", "magic-plausible-length"],
)
def test_garbage_after_the_last_frame_is_a_torn_tail(tmp_path: Path, run, disk, garbage: bytes) -> None:
    directory = tmp_path / "s"
    stored = run(fill(directory, [1, 3, 1]))
    segment = disk.last_segment(directory)
    good_size = segment.stat().st_size
    with open(segment, "ab") as handle:
        handle.write(garbage)
    assert segment.stat().st_size == good_size + len(garbage)

    async def check() -> None:
        async with EventStore(directory) as store:
            await assert_readable(store, stored)
            assert store.health().state == HealthState.HEALTHY
            assert store.stats().torn_tail_bytes_truncated == len(garbage)
            assert segment.stat().st_size == good_size
            assert (await store.append(Event(EventType.CUSTOM, aggregate_id="a"))).sequence == len(stored) + 1

    run(check())


@pytest.mark.parametrize("keep_bytes", [0, 10, 31, 32], ids=["empty", "partial-10", "partial-31", "header-only"])
def test_new_segment_torn_before_its_first_frame(tmp_path: Path, run, disk, keep_bytes: int) -> None:
    """A crash right after rotation leaves a new segment with a partial (or only a) header."""
    directory = tmp_path / "s"
    stored = run(fill(directory, [1] * 12, data_bytes=900, segment_bytes=4096))
    segments = disk.segments(directory)
    assert len(segments) >= 3
    last = segments[-1]
    lost = [e for e in stored if e.sequence >= int(last.stem)]
    kept = [e for e in stored if e.sequence < int(last.stem)]
    disk.truncate(last, keep_bytes)

    async def check() -> None:
        async with EventStore(directory, segment_bytes=4096) as store:
            await assert_readable(store, kept)
            await assert_absent(store, lost)
            assert store.health().state == HealthState.HEALTHY
            fresh = await store.append(Event(EventType.CUSTOM, aggregate_id="a"))
            assert fresh.sequence == len(kept) + 1
        async with EventStore(directory, segment_bytes=4096) as store:
            await assert_readable(store, [*kept, fresh])

    run(check())


@pytest.mark.parametrize(("keep_bytes", "garbage_bytes"), [(0, 40), (0, 200), (10, 60)],
                         ids=["empty+40", "empty+200", "partial-10+60"])
def test_new_segment_killed_before_its_header_then_torn(tmp_path: Path, run, disk, keep_bytes: int,
                                                       garbage_bytes: int) -> None:
    """A kill between a new segment's creation and its header's write, then a torn write's garbage where the
    header belongs (what the restart campaign's sigkill + tail tear produced under load): no frame can have been
    acknowledged there, so it is a torn tail (cut, header rewritten), not a damaged header."""
    directory = tmp_path / "s"
    stored = run(fill(directory, [1] * 12, data_bytes=900, segment_bytes=4096))
    last = disk.segments(directory)[-1]
    kept = [e for e in stored if e.sequence < int(last.stem)]
    disk.truncate(last, keep_bytes)
    append_garbage(last, garbage_bytes, random.Random(garbage_bytes)).require()  # the campaign's own tail tear

    async def check() -> None:
        async with EventStore(directory, segment_bytes=4096) as store:
            assert [d["kind"] for d in store.health().damage] == ["torn_tail"]
            assert store.health().state == HealthState.HEALTHY
            await assert_readable(store, kept)
            fresh = await store.append(Event(EventType.CUSTOM, aggregate_id="a"))
            assert fresh.sequence == len(kept) + 1
        async with EventStore(directory, segment_bytes=4096) as store:
            assert [d["kind"] for d in store.health().damage if d["kind"] != "torn_tail"] == []
            await assert_readable(store, [*kept, fresh])

    run(check())


# ----------------------------------------------------------------------------------- corruption in the middle


def _damage(disk, segment: Path, how: str, frames: list) -> None:
    third = frames[2]
    if how == "payload-bit-flip":
        disk.flip_bit(segment, third.offset + 28 + (third.size - 28) // 2, bit=5)
    elif how == "header-sequence-bit-flip":
        disk.flip_bit(segment, third.offset + 12, bit=1)  # first_seq field
    elif how == "magic-bit-flip":
        disk.flip_bit(segment, third.offset, bit=0)
    elif how == "zeroed-range":
        disk.overwrite(segment, third.offset + 10, bytes(third.size - 15))
    else:
        raise AssertionError(how)


@pytest.mark.parametrize("how", ["payload-bit-flip", "header-sequence-bit-flip", "magic-bit-flip", "zeroed-range"])
def test_a_bad_frame_followed_by_good_frames_is_quarantined_not_truncated(
    tmp_path: Path, run, disk, how: str
) -> None:
    directory = tmp_path / "s"
    stored = run(fill(directory, [1] * 6))
    segment = disk.last_segment(directory)
    frames = disk.frames(segment)
    size_before = segment.stat().st_size
    pristine_bytes = segment.read_bytes()
    _damage(disk, segment, how, frames)
    damaged_bytes = segment.read_bytes()
    assert damaged_bytes != pristine_bytes and len(damaged_bytes) == size_before
    victim = stored[2]
    intact = [e for e in stored if e is not victim]

    async def first_open() -> Event:
        async with EventStore(directory) as store:
            assert segment.read_bytes()[:size_before] == damaged_bytes, "data after the damage was truncated"
            await assert_readable(store, intact)
            await assert_absent(store, [victim])
            health = store.health()
            assert health.state == HealthState.DEGRADED
            assert health.writable
            assert set(health.lost_sequences) == {(3, 3)}
            assert any(d["kind"] == "corrupt" and d["lost_first"] == 3 for d in health.damage)
            assert "corruption" in health.reasons
            assert store.stats().quarantined_bytes > 0
            assert store.stats().torn_tail_bytes_truncated == 0
            return await append_next(store, floor=len(stored))

    fresh = run(first_open())
    quarantined = sorted((directory / "quarantine").glob("*.bad"))
    assert len(quarantined) == 1
    (bad,) = quarantined
    info = json.loads(bad.with_suffix(".json").read_text())
    assert (info["lost_first"], info["lost_last"], info["kind"]) == (3, 3, "corrupt")
    assert bad.read_bytes() == damaged_bytes[info["start"] : info["end"]]
    assert info["start"] <= frames[2].offset + 10 and info["end"] >= frames[2].end - 5
    assert info["end"] <= frames[3].offset, "good frame 4 was swallowed by the quarantine range"

    async def second_open() -> None:
        async with EventStore(directory) as store:
            await assert_readable(store, [*intact, fresh])
            assert set(store.health().lost_sequences) == {(3, 3)}
            await append_next(store, floor=fresh.sequence)

    run(second_open())
    assert sorted((directory / "quarantine").glob("*.bad")) == quarantined, "damage quarantined twice"


def test_each_lost_range_is_reported_exactly_once(tmp_path: Path, run, disk) -> None:
    directory = tmp_path / "s"
    run(fill(directory, [1] * 5))
    segment = disk.last_segment(directory)
    third = disk.frames(segment)[2]
    disk.flip_bit(segment, third.offset + third.size - 2)

    async def check() -> None:
        async with EventStore(directory) as store:
            assert store.health().lost_sequences == [(3, 3)]
            assert [d["kind"] for d in store.health().damage] == ["corrupt"]

    run(check())


def test_stats_report_the_lost_sequences(tmp_path: Path, run, disk) -> None:
    directory = tmp_path / "s"
    run(fill(directory, [1] * 5))
    segment = disk.last_segment(directory)
    third = disk.frames(segment)[2]
    disk.flip_bit(segment, third.offset + third.size - 2)

    async def check() -> None:
        async with EventStore(directory) as store:
            assert store.stats().lost_sequences == [(3, 3)], store.stats()

    run(check())


def test_damage_spanning_two_frames_loses_exactly_those_sequences(tmp_path: Path, run, disk) -> None:
    directory = tmp_path / "s"
    stored = run(fill(directory, [1, 1, 2, 1, 1]))  # frames hold seqs 1 | 2 | 3-4 | 5 | 6
    segment = disk.last_segment(directory)
    frames = disk.frames(segment)
    disk.overwrite(segment, frames[2].end - 8, bytes(16))  # the end of frame 3-4 and the start of frame 5
    intact = [e for e in stored if e.sequence not in (3, 4, 5)]

    async def check() -> None:
        async with EventStore(directory) as store:
            await assert_readable(store, intact)
            await assert_absent(store, [e for e in stored if e.sequence in (3, 4, 5)])
            assert set(store.health().lost_sequences) == {(3, 5)}
            await append_next(store, floor=6)

    run(check())


def test_corruption_of_the_first_frame(tmp_path: Path, run, disk) -> None:
    directory = tmp_path / "s"
    stored = run(fill(directory, [2, 1, 1]))
    segment = disk.last_segment(directory)
    first = disk.frames(segment)[0]
    disk.flip_bit(segment, first.offset + first.size - 1, bit=7)

    async def check() -> None:
        async with EventStore(directory) as store:
            await assert_readable(store, stored[2:])
            assert set(store.health().lost_sequences) == {(1, 2)}

    run(check())


def test_a_bad_tail_of_a_closed_segment_is_corruption_not_a_torn_write(tmp_path: Path, run, disk) -> None:
    """Closed segments were fsynced before their successor existed: a bad end there is never a crash."""
    directory = tmp_path / "s"
    stored = run(fill(directory, [1] * 12, data_bytes=900, segment_bytes=4096))
    segments = disk.segments(directory)
    assert len(segments) >= 3
    closed = segments[0]
    last_frame = disk.frames(closed)[-1]
    size_before = closed.stat().st_size
    disk.overwrite(closed, last_frame.offset + 40, bytes(last_frame.size - 40))
    victims = list(range(last_frame.first_seq, last_frame.first_seq + last_frame.count))

    async def check() -> None:
        async with EventStore(directory, segment_bytes=4096) as store:
            assert closed.stat().st_size == size_before
            await assert_readable(store, [e for e in stored if e.sequence not in victims])
            assert set(store.health().lost_sequences) == {(victims[0], victims[-1])}
            assert store.health().state == HealthState.DEGRADED
            await append_next(store, floor=len(stored))

    run(check())


def test_a_missing_frame_is_reported_as_lost_sequences(tmp_path: Path, run, disk) -> None:
    directory = tmp_path / "s"
    stored = run(fill(directory, [1] * 5))
    segment = disk.last_segment(directory)
    frames = disk.frames(segment)
    raw = segment.read_bytes()
    segment.write_bytes(raw[: frames[2].offset] + raw[frames[2].end :])

    async def check() -> None:
        async with EventStore(directory) as store:
            await assert_readable(store, [e for e in stored if e.sequence != 3])
            assert store.health().lost_sequences == [(3, 3)]
            assert [(d["kind"], d["segment"]) for d in store.health().damage] == [("missing_sequences", segment.name)]
            assert store.health().state == HealthState.DEGRADED
            await append_next(store, floor=5)

    run(check())


@pytest.mark.parametrize("where", ["middle", "tail"])
def test_a_duplicated_frame_never_duplicates_events(tmp_path: Path, run, disk, where: str) -> None:
    directory = tmp_path / "s"
    stored = run(fill(directory, [1, 2, 1, 1]))
    segment = disk.last_segment(directory)
    frames = disk.frames(segment)
    raw = segment.read_bytes()
    copy = raw[frames[1].offset : frames[1].end]
    insert_at = frames[3].offset if where == "middle" else len(raw)
    segment.write_bytes(raw[:insert_at] + copy + raw[insert_at:])

    async def check() -> None:
        async with EventStore(directory) as store:
            await assert_readable(store, stored)
            health = store.health()
            assert [(d["kind"], d["segment"]) for d in health.damage] == [("duplicate_frame", segment.name)]
            fresh = await append_next(store, floor=len(stored))
        async with EventStore(directory) as store:
            await assert_readable(store, [*stored, fresh])

    run(check())


def test_a_duplicated_frame_loses_no_sequences(tmp_path: Path, run, disk) -> None:
    directory = tmp_path / "s"
    run(fill(directory, [1, 2, 1]))
    segment = disk.last_segment(directory)
    second = disk.frames(segment)[1]
    with open(segment, "ab") as handle:
        handle.write(segment.read_bytes()[second.offset : second.end])

    async def check() -> None:
        async with EventStore(directory) as store:
            assert store.health().lost_sequences == []

    run(check())


def test_a_damaged_segment_header_keeps_its_frames_readable(tmp_path: Path, run, disk) -> None:
    directory = tmp_path / "s"
    stored = run(fill(directory, [1, 1, 1]))
    segment = disk.last_segment(directory)
    disk.flip_bit(segment, 17)  # inside first_seq of the segment header

    async def check() -> None:
        async with EventStore(directory) as store:
            await assert_readable(store, stored)
            assert any(d["kind"] == "bad_segment_header" for d in store.health().damage)
            assert store.health().state == HealthState.DEGRADED

    run(check())


def test_corruption_found_on_open_is_recorded_as_an_event(tmp_path: Path, run, disk) -> None:
    directory = tmp_path / "s"
    run(fill(directory, [1] * 5))
    segment = disk.last_segment(directory)
    third = disk.frames(segment)[2]
    disk.flip_bit(segment, third.offset + third.size - 2)

    async def check() -> None:
        async with EventStore(directory) as store:
            await store.append(Event(EventType.CUSTOM, aggregate_id="a"))
            found = await store.query(EventFilter(event_types=[EventType.CORRUPTION_DETECTED]))
            assert len(found.events) == 1
            assert "3" in json.dumps(found.events[0].data)

    run(check())


# ------------------------------------------------------------------------------- property: any single damage


@given(
    layout=st.lists(st.integers(1, 4), min_size=3, max_size=8),
    data=st.data(),
)
@settings(max_examples=40, deadline=None)
def test_any_byte_change_inside_any_middle_frame_loses_only_that_frame(
    tmp_path_factory: pytest.TempPathFactory, run, disk, layout: list[int], data: st.DataObject
) -> None:
    directory = tmp_path_factory.mktemp("prop") / "s"
    stored = run(fill(directory, layout, data_bytes=8))
    segment = disk.last_segment(directory)
    frames = disk.frames(segment)
    victim_frame = frames[data.draw(st.integers(0, len(frames) - 2), label="frame")]
    position = data.draw(st.integers(victim_frame.offset, victim_frame.end - 1), label="byte")
    delta = data.draw(st.integers(1, 255), label="xor")
    raw = bytearray(segment.read_bytes())
    raw[position] ^= delta
    segment.write_bytes(bytes(raw))
    lost = range(victim_frame.first_seq, victim_frame.first_seq + victim_frame.count)

    async def check() -> None:
        async with EventStore(directory) as store:
            await assert_readable(store, [e for e in stored if e.sequence not in lost])
            assert set(store.health().lost_sequences) == {(lost[0], lost[-1])}
            await append_next(store, floor=len(stored))

    run(check())
