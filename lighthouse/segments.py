"""Segment files: naming, listing, scanning a directory, and reading frames back.

Segments are named by the first sequence they hold (20 digits, so names sort numerically). A
reader never trusts bytes it has not checksummed: every frame read, by point lookup or by
sequential scan, is verified before it is decoded. Bytes damaged while the store is open (after the
open-time scan) are caught here: the read fails with ``StoreCorrupted`` and the reader's
``on_corrupt`` callback is told, so the store can report it in its health.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import msgpack

from lighthouse.errors import StoreCorrupted
from lighthouse.framing import (
    FRAME_EVENTS,
    FRAME_HEADER,
    SEGMENT_HEADER,
    FrameHeader,
    decode_events_payload,
    parse_frame_header,
    parse_segment_header,
    verify_frame,
)
from lighthouse.models import Event
from lighthouse.recovery import Damage, SegmentScan, holds_a_valid_frame, scan_segment

__all__ = [
    "FrameReader",
    "WindowReader",
    "SegmentReport",
    "decode_frame",
    "list_segments",
    "scan_directory",
    "segment_name",
]

SEGMENT_SUFFIX = ".seg"
_new = tuple.__new__
#: Told about every frame that fails its checksum on read (the error is raised to the reader as well).
CorruptionCallback = Callable[[StoreCorrupted], None]


def segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}{SEGMENT_SUFFIX}"


def list_segments(path: Path) -> list[Path]:
    out = []
    for entry in path.glob(f"*{SEGMENT_SUFFIX}"):
        if entry.stem.isdigit() and len(entry.stem) == 20:
            out.append(entry)
    return sorted(out)


@dataclass(slots=True)
class SegmentReport:
    path: Path
    first_seq_from_name: int
    size: int
    scan: SegmentScan = field(default_factory=SegmentScan)


def _read_whole(path: Path) -> Any:
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size == 0:
            return b""
        return mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)


def scan_directory(
    path: Path, *, first_segment: int = 0, resume_at: int = SEGMENT_HEADER, expected: int = 1
) -> list[SegmentReport]:
    """Scan every segment in order; fills in lost ranges that only the next segment can bound.

    To continue from an index checkpoint: skip the ``first_segment`` segments it covers fully and
    start the next one at ``resume_at`` (a frame boundary) expecting sequence ``expected``; reports
    then start with that segment.
    """
    reports: list[SegmentReport] = []
    segments = list_segments(path)
    for i, seg_path in enumerate(segments):
        if i < first_segment:
            continue
        buf = _read_whole(seg_path)
        try:
            header_first = parse_segment_header(buf[:SEGMENT_HEADER]) if len(buf) >= SEGMENT_HEADER else None
            name_first = int(seg_path.stem)
            is_last = i == len(segments) - 1
            resumed_inside = i == first_segment and resume_at > SEGMENT_HEADER  # a checkpoint saw its frames
            if is_last and (len(buf) < SEGMENT_HEADER or (
                not resumed_inside and header_first != name_first and not holds_a_valid_frame(buf)
            )):
                # A segment whose header never reached the disk: nothing in it was ever acknowledged (frames
                # are written only after the header's sync). A crash between the file's creation and that
                # sync, then a torn write, can leave bytes that fill the header's place: without a single
                # verified frame after them they are that torn write, not a damaged header.
                scan = SegmentScan(next_sequence=expected, truncate_at=0)
                scan.damage.append(Damage(seg_path.name, 0, len(buf), "torn_tail"))
            else:
                scan = scan_segment(
                    buf,
                    seg_path.name,
                    expected,
                    is_last=is_last,
                    header_ok=header_first == name_first,
                    start=resume_at if i == first_segment else SEGMENT_HEADER,
                )
            reports.append(SegmentReport(seg_path, name_first, len(buf), scan))
            expected = scan.next_sequence
        finally:
            if isinstance(buf, mmap.mmap):
                buf.close()
    # A corrupt tail of a closed segment lost everything up to the next segment's first frame.
    for i, report in enumerate(reports[:-1]):
        nxt = reports[i + 1]
        nxt_first = nxt.scan.frames[0][1].first_seq if nxt.scan.frames else nxt.first_seq_from_name
        fixed = []
        for damage in report.scan.damage:
            if damage.kind == "corrupt" and damage.lost_last is None and damage.lost_first is not None:
                damage = replace(damage, lost_last=nxt_first - 1) if nxt_first > damage.lost_first else replace(
                    damage, lost_first=None
                )
            fixed.append(damage)
        report.scan.damage = fixed
    return reports


def decode_frame(buf: Any, offset: int, header: FrameHeader) -> list[Event]:
    """The events of a verified frame (empty for a void frame)."""
    if header.kind != FRAME_EVENTS:
        return []
    start = offset + FRAME_HEADER
    recorded_at, versions, records = decode_events_payload(buf[start : start + header.payload_len])
    first = header.first_seq
    return [
        _new(Event, (*record, first + i, recorded_at, versions[i])) for i, record in enumerate(records)
    ]


def _checked(buf: Any, rel: int, fd: int, offset: int, name: str) -> tuple[Any, int, FrameHeader]:
    """The frame at ``rel`` of ``buf`` (re-read whole from ``fd`` if ``buf`` holds only its start),
    checksum verified; ``StoreCorrupted`` otherwise: damaged bytes are never decoded or served."""
    header = parse_frame_header(buf, rel)
    if header is not None and rel + header.size > len(buf):
        buf, rel = os.pread(fd, header.size, offset), 0
    if header is None or not verify_frame(buf, rel, header):
        raise StoreCorrupted(f"frame at {name}:{offset} failed its checksum on read", segment=name, offset=offset)
    return buf, rel, header


def _payload(buf: Any, offset: int, header: FrameHeader) -> tuple[msgpack.Unpacker, float, list[int], int]:
    """An unpacker positioned at the first client record, with the frame's time, versions and count."""
    start = offset + FRAME_HEADER
    unpacker = msgpack.Unpacker(strict_map_key=False, max_buffer_size=header.payload_len + 1)
    unpacker.feed(buf[start : start + header.payload_len])
    unpacker.read_array_header()
    recorded_at = unpacker.unpack()
    versions = unpacker.unpack()
    return unpacker, recorded_at, versions, unpacker.read_array_header()


def _reported(on_corrupt: CorruptionCallback | None, error: StoreCorrupted) -> StoreCorrupted:
    if on_corrupt is not None:
        on_corrupt(error)
    return error


class FrameReader:
    """Positional reads of frames by (segment, offset), always checksum-verified before decoding."""

    def __init__(self, on_corrupt: CorruptionCallback | None = None) -> None:
        self._fds: dict[int, int] = {}
        self._on_corrupt = on_corrupt

    def add_segment(self, segment: int, fd: int) -> None:
        self._fds[segment] = fd

    def read_span(self, segment: int, lo: int, hi: int, *, end: int = 0, name: str = "") -> _SpanFrames:
        """The frames starting at offsets ``lo..hi``, read with one pread (up to ``end`` when the caller knows
        where the frame at ``hi`` ends; a frame that reaches past the bytes read is read again whole) and
        decoded on demand."""
        fd = self._fds[segment]
        buf = os.pread(fd, (end if end > hi else hi + FRAME_HEADER + 4096) - lo, lo)
        return _SpanFrames(fd, buf, lo, name, self._on_corrupt)

    def fd(self, segment: int) -> int:
        return self._fds[segment]

    def window(self, segment: int, *, window: int = 1 << 20) -> WindowReader:
        """A sequential reader over ``segment`` that reports checksum failures like this reader does."""
        return WindowReader(self._fds[segment], window=window, on_corrupt=self._on_corrupt)

    def close(self) -> None:
        for fd in self._fds.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds.clear()


class _SpanFrames:
    """Frames of one span read with a single pread, decoded on demand and only as far as needed."""

    def __init__(self, fd: int, buf: bytes, base: int, name: str, on_corrupt: CorruptionCallback | None) -> None:
        self._fd, self._buf, self._base, self._name = fd, buf, base, name
        self._on_corrupt = on_corrupt

    def events(
        self,
        offset: int,
        slots: list[int],
        record_offsets: list[int],
        record_ends: list[int],
        stamp: tuple[float, list[int]] | None = None,
    ) -> list[Event]:
        """``decode_frame_records`` of the frame at ``offset``, checksummed whole before any of it is decoded."""
        try:
            buf, rel, header = _checked(self._buf, offset - self._base, self._fd, offset, self._name)
        except StoreCorrupted as error:
            raise _reported(self._on_corrupt, error) from None
        return decode_frame_records(buf, rel, header, slots, record_offsets, record_ends, stamp)


def _iter_frame(buf: Any, offset: int, header: FrameHeader, first_slot: int) -> Iterator[Event]:
    if header.kind != FRAME_EVENTS:
        return
    unpacker, recorded_at, versions, count = _payload(buf, offset, header)
    for _ in range(first_slot):
        unpacker.skip()
    sequence = header.first_seq + first_slot
    unpack = unpacker.unpack
    for slot in range(first_slot, count):
        yield _new(Event, (*unpack(), sequence, recorded_at, versions[slot]))
        sequence += 1


def record_offsets(buf: Any, offset: int, header: FrameHeader) -> list[int]:
    """Where each record of a verified events frame starts, counted from the frame's first byte."""
    if header.kind != FRAME_EVENTS:
        return []
    unpacker, _recorded_at, _versions, count = _payload(buf, offset, header)
    tell, skip = unpacker.tell, unpacker.skip
    out = []
    for _ in range(count):
        out.append(FRAME_HEADER + tell())
        skip()
    return out


_LONG_RUN = 16
#: bytes before a frame's first record, at most: array header, recorded_at, the versions' array header
#: and one version of at most 9 bytes per event
_STAMP_BYTES = 1 + 9 + 5
_VERSION_BYTES = 9


def _stamp(view: memoryview, offset: int, header: FrameHeader) -> tuple[float, list[int]]:
    """The frame's ``recorded_at`` and aggregate versions, decoded from the bytes before its records."""
    start = offset + FRAME_HEADER
    prefix = view[start : min(offset + header.size, start + _STAMP_BYTES + _VERSION_BYTES * header.count)]
    unpacker = msgpack.Unpacker(strict_map_key=False, read_size=len(prefix) + 1)
    unpacker.feed(prefix)
    unpacker.read_array_header()
    return unpacker.unpack(), unpacker.unpack()


def decode_frame_records(
    buf: Any,
    offset: int,
    header: FrameHeader,
    slots: list[int],
    record_offsets: list[int],
    record_ends: list[int],
    stamp: tuple[float, list[int]] | None = None,
) -> list[Event]:
    """Events of a verified frame at ``slots`` (distinct, in any order), in that order, each decoded from
    exactly its own record's bytes (``record_offsets`` to ``record_ends``, counted from the frame's first
    byte; an end of 0 is the frame's end): nothing else in the frame is walked or copied.

    ``stamp`` is the frame's ``recorded_at`` and the wanted events' versions (in the order of ``slots``) when
    the caller knows them (the index holds both); without it they are decoded from the frame."""
    if header.kind != FRAME_EVENTS:
        return []
    if len(slots) == header.count:  # the whole frame: one decode of its payload
        whole = decode_frame(buf, offset, header)
        return whole if slots == list(range(header.count)) else [whole[slot] for slot in slots]
    with memoryview(buf) as view:
        frame = view[offset : offset + header.size]
        if stamp is None:
            recorded_at, frame_versions = _stamp(view, offset, header)
            versions = [frame_versions[slot] for slot in slots]
        else:
            recorded_at, versions = stamp
        first, size = header.first_seq, header.size
        if len(slots) >= _LONG_RUN and slots == list(range(slots[0], slots[0] + len(slots))):  # one decoder
            unpacker = msgpack.Unpacker(strict_map_key=False, max_buffer_size=size + 1)
            unpacker.feed(frame[record_offsets[0] : record_ends[-1] or size])
            events = [_new(Event, (*record, first + slot, recorded_at, version))
                      for slot, version, record in zip(slots, versions, unpacker)]
            if len(events) == len(slots) and next(unpacker, None) is None:
                return events
        else:
            unpack = msgpack.unpackb
            return [_new(Event, (*unpack(frame[start : end or size], strict_map_key=False), first + slot, recorded_at,
                                 version))
                    for slot, start, end, version in zip(slots, record_offsets, record_ends, versions)]
    raise ValueError("the index's record bounds do not match its frame's records")


class WindowReader:
    """Sequential reads through one segment in large windows: replay in constant memory."""

    def __init__(self, fd: int, *, window: int = 1 << 20, on_corrupt: CorruptionCallback | None = None) -> None:
        self._fd = fd
        self._window = window
        self._on_corrupt = on_corrupt
        self._start = 0
        self._buf = b""

    def _frame(self, offset: int, name: str) -> tuple[int, FrameHeader]:
        rel = offset - self._start
        if rel < 0 or rel + FRAME_HEADER > len(self._buf):
            self._load(offset, FRAME_HEADER)
            rel = 0
        header = parse_frame_header(self._buf, rel)
        if header is not None and rel + header.size > len(self._buf):
            self._load(offset, header.size)
            rel = 0
        try:
            _, rel, header = _checked(self._buf, rel, self._fd, offset, name)
        except StoreCorrupted as error:
            raise _reported(self._on_corrupt, error) from None
        return rel, header

    def frame_at(self, offset: int, *, name: str = "") -> tuple[FrameHeader, list[Event]]:
        rel, header = self._frame(offset, name)
        return header, decode_frame(self._buf, rel, header)

    def frame_with_offsets(self, offset: int, *, name: str = "") -> tuple[FrameHeader, list[Event], list[int]]:
        """``frame_at`` and where each record starts, counted from the frame's first byte (for the index)."""
        rel, header = self._frame(offset, name)
        return header, decode_frame(self._buf, rel, header), record_offsets(self._buf, rel, header)

    def stream_frame(self, offset: int, first_slot: int, *, name: str = "") -> tuple[FrameHeader, Iterator[Event]]:
        """The frame's header and a lazy iterator over its events from ``first_slot`` (checksum verified first).

        Decoding one event at a time keeps each event short-lived: a consumer that drops it lets it die
        young, instead of a thousand-event list surviving into older GC generations (a third of replay time).
        """
        rel, header = self._frame(offset, name)
        return header, _iter_frame(self._buf, rel, header, first_slot)

    def _load(self, offset: int, at_least: int) -> None:
        self._start = offset
        self._buf = os.pread(self._fd, max(self._window, at_least), offset)
