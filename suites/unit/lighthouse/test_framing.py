"""Frames and segment headers: what is written decodes back, and any flipped bit is caught."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lighthouse import Event, EventType
from lighthouse.framing import (
    FRAME_EVENTS,
    FRAME_HEADER,
    FRAME_VOID,
    SEGMENT_HEADER,
    decode_events_payload,
    encode_events_frame,
    encode_events_frame_with_offsets,
    encode_segment_header,
    encode_void_frame,
    parse_frame_header,
    parse_segment_header,
    verify_frame,
)
from lighthouse.segments import decode_frame, decode_frame_records, record_offsets


def _packed(event: Event) -> bytes:
    return msgpack.packb(event.client_record(), use_bin_type=True)


def _sample_frame(first_seq: int = 7) -> tuple[bytes, list[Event]]:
    events = [
        Event(EventType.FILE_CREATED, aggregate_id="file:/a", data={"path": "/a", "size": 3}, timestamp=1.0),
        Event(EventType.FILE_DELETED, aggregate_id="file:/a", causation_id="c-1", timestamp=2.0),
    ]
    return encode_events_frame(first_seq, 1234.5, [1, 2], [_packed(e) for e in events]), events


def _is_accepted(frame: bytes) -> bool:
    header = parse_frame_header(frame, 0)
    return header is not None and verify_frame(frame, 0, header)


def test_an_events_frame_decodes_to_the_events_with_store_fields() -> None:
    frame, events = _sample_frame(first_seq=7)
    header = parse_frame_header(frame, 0)
    assert header is not None and verify_frame(frame, 0, header)
    assert (header.first_seq, header.count, header.kind, header.size) == (7, 2, FRAME_EVENTS, len(frame))
    decoded = decode_frame(frame, 0, header)
    assert [e.sequence for e in decoded] == [7, 8]
    assert [e.recorded_at for e in decoded] == [1234.5, 1234.5]
    assert [e.aggregate_version for e in decoded] == [1, 2]
    assert [e.client_record() for e in decoded] == [tuple(msgpack.unpackb(_packed(e))) for e in events]
    assert decoded[0].event_type is EventType.FILE_CREATED


def test_every_single_bit_flip_in_header_or_payload_is_caught() -> None:
    frame, _ = _sample_frame()
    assert _is_accepted(frame)
    missed = []
    for position in range(len(frame)):
        for bit in range(8):
            damaged = bytearray(frame)
            damaged[position] ^= 1 << bit
            if _is_accepted(bytes(damaged)):
                missed.append((position, bit))
    assert missed == [], f"bit flips not detected at (byte, bit) {missed}"


def test_a_frame_cut_short_is_never_accepted() -> None:
    frame, _ = _sample_frame()
    for length in range(len(frame)):
        assert not _is_accepted(frame[:length]), f"accepted a frame cut to {length} of {len(frame)} bytes"


def test_frames_are_found_at_any_offset_in_a_buffer() -> None:
    first, _ = _sample_frame(first_seq=1)
    second, _ = _sample_frame(first_seq=3)
    buf = b"\x00" * 5 + first + second
    header = parse_frame_header(buf, 5 + len(first))
    assert header is not None and verify_frame(buf, 5 + len(first), header) and header.first_seq == 3


def test_void_frame_carries_the_range_and_no_events() -> None:
    frame = encode_void_frame(10, 4, "write failed: ENOSPC")
    header = parse_frame_header(frame, 0)
    assert header is not None and verify_frame(frame, 0, header)
    assert (header.kind, header.first_seq, header.count, header.last_seq) == (FRAME_VOID, 10, 4, 13)
    assert decode_frame(frame, 0, header) == []
    assert msgpack.unpackb(frame[FRAME_HEADER:]) == {"reason": "write failed: ENOSPC"}


def test_implausible_headers_are_rejected_before_any_checksum() -> None:
    frame, _ = _sample_frame()
    assert parse_frame_header(frame[: FRAME_HEADER - 1], 0) is None
    assert parse_frame_header(b"XXXX" + frame[4:], 0) is None
    huge_length = frame[:4] + (2**31).to_bytes(4, "little") + frame[8:]
    assert parse_frame_header(huge_length, 0) is None


def test_segment_header_round_trips_and_any_bit_flip_is_caught() -> None:
    header = encode_segment_header(4242)
    assert len(header) == SEGMENT_HEADER
    assert parse_segment_header(header) == 4242
    assert parse_segment_header(header[:-1]) is None
    for position in range(24):  # magic, format, reserved, first_seq: everything the CRC covers
        for bit in range(8):
            damaged = bytearray(header)
            damaged[position] ^= 1 << bit
            assert parse_segment_header(bytes(damaged)) is None, (position, bit)


records = st.lists(
    st.builds(
        lambda kind, aggregate, data: Event(kind, aggregate_id=aggregate, data=data, timestamp=0.0),
        st.sampled_from(list(EventType)),
        st.text(min_size=1, max_size=20),
        st.dictionaries(st.text(max_size=5), st.integers(-(2**63), 2**64 - 1) | st.text(max_size=30) | st.binary(max_size=30), max_size=4),
    ),
    min_size=1,
    max_size=20,
)


@given(events=records, first_seq=st.integers(1, 2**62), recorded_at=st.floats(0, 2e9))
@settings(max_examples=80, deadline=None)
def test_any_events_frame_round_trips(events: list[Event], first_seq: int, recorded_at: float) -> None:
    versions = list(range(1, len(events) + 1))
    frame = encode_events_frame(first_seq, recorded_at, versions, [_packed(e) for e in events])
    header = parse_frame_header(frame, 0)
    assert header is not None and verify_frame(frame, 0, header)
    stamped, got_versions, raw = decode_events_payload(frame[FRAME_HEADER:])
    assert (stamped, got_versions, len(raw)) == (recorded_at, versions, len(events))
    decoded = decode_frame(frame, 0, header)
    assert [e.client_record() for e in decoded] == [e.client_record() for e in events]
    assert [e.sequence for e in decoded] == list(range(first_seq, first_seq + len(events)))


@given(data=st.data())
@settings(max_examples=60, deadline=None)
def test_a_random_byte_change_anywhere_in_a_random_frame_is_caught(data: st.DataObject) -> None:
    events = data.draw(records)
    frame = encode_events_frame(1, 1.0, [1] * len(events), [_packed(e) for e in events])
    position = data.draw(st.integers(0, len(frame) - 1))
    delta = data.draw(st.integers(1, 255))
    damaged = bytearray(frame)
    damaged[position] ^= delta
    assert not _is_accepted(bytes(damaged))


@pytest.mark.parametrize("kind_value", [0, 3, 0xFFFF])
def test_unknown_frame_kinds_are_not_frames(kind_value: int) -> None:
    frame, _ = _sample_frame()
    damaged = bytearray(frame)
    damaged[24:26] = kind_value.to_bytes(2, "little")
    assert parse_frame_header(bytes(damaged), 0) is None


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(min_value=0, max_value=3000), min_size=1, max_size=40), data=st.data())
def test_record_offsets_of_the_writer_and_of_a_scan_agree_and_any_subset_decodes_exactly(sizes, data) -> None:
    events = [Event(EventType.CUSTOM, aggregate_id=f"a:{i}", data={"pad": "x" * n}, timestamp=1.0)
              for i, n in enumerate(sizes)]
    frame, offsets = encode_events_frame_with_offsets(5, 9.5, list(range(1, len(events) + 1)),
                                                      [_packed(e) for e in events])
    header = parse_frame_header(frame, 0)
    assert header is not None and verify_frame(frame, 0, header)
    assert record_offsets(frame, 0, header) == offsets  # what recovery indexes is what the writer indexed
    slots = data.draw(st.permutations(range(len(events))))[: data.draw(st.integers(1, len(events)))]
    ends = [offsets[s + 1] if s + 1 < len(events) else 0 for s in slots]
    decoded = decode_frame_records(frame, 0, header, slots, [offsets[s] for s in slots], ends)
    whole = decode_frame(frame, 0, header)
    assert decoded == [whole[s] for s in slots]
    assert [event.event_id for event in decoded] == [events[s].event_id for s in slots]
    # what the index holds of each event (the frame's time, the versions) gives the same events
    stamped = decode_frame_records(frame, 0, header, slots, [offsets[s] for s in slots], ends, (9.5, [s + 1 for s in slots]))
    assert stamped == decoded


@pytest.mark.parametrize("slots", [list(range(3, 31)), list(range(30, 2, -1)), list(range(24, 40)),
                                   [0, 2, 1, *range(3, 16)]],
                         ids=["ascending run", "descending run", "run to the frame's end", "a run out of order"])
def test_runs_of_slots_decode_in_the_asked_order(slots: list[int]) -> None:
    events = [Event(EventType.CUSTOM, aggregate_id=f"a:{i}", data={"pad": "y" * i}, timestamp=1.0) for i in range(40)]
    frame, offsets = encode_events_frame_with_offsets(1, 2.5, list(range(40)), [_packed(e) for e in events])
    header = parse_frame_header(frame, 0)
    assert header is not None
    ends = [offsets[s + 1] if s + 1 < len(events) else 0 for s in slots]
    decoded = decode_frame_records(frame, 0, header, slots, [offsets[s] for s in slots], ends)
    assert [(e.event_id, e.sequence, e.aggregate_version) for e in decoded] == [
        (events[s].event_id, 1 + s, s) for s in slots]
    # with the time and versions given by the caller (in the order of the slots) the events are the same
    stamped = decode_frame_records(frame, 0, header, slots, [offsets[s] for s in slots], ends, (2.5, list(slots)))
    assert stamped == decoded


def test_record_bounds_that_do_not_fit_their_frame_are_an_error() -> None:
    events = [Event(EventType.CUSTOM, aggregate_id=f"a:{i}", timestamp=1.0) for i in range(20)]
    frame, offsets = encode_events_frame_with_offsets(1, 2.5, [1] * 20, [_packed(e) for e in events])
    header = parse_frame_header(frame, 0)
    assert header is not None
    with pytest.raises(ValueError):  # one record's start with the end of the record after it: two records
        decode_frame_records(frame, 0, header, [4], [offsets[4]], [offsets[6]])
    with pytest.raises(ValueError):  # a run said to hold 16 records whose bytes hold 17
        decode_frame_records(frame, 0, header, list(range(16)), offsets[:16], [*offsets[1:16], offsets[17]])
