"""Telling a crash from corruption when a segment is scanned on open.

The lesson of the CORDS/PAR studies: a bad frame at the very END of the newest segment is what a
crash leaves (an append that never finished, never acknowledged) and is truncated; a bad frame
FOLLOWED by good data is corruption of committed data and must never be silently truncated away.
Corruption is quarantined (copied aside), reported with the sequence range it cost, and every
intact frame around it stays readable.

The writer allocates the newest segment's blocks ahead of its appends (see ``WritePath._reserve``), so
after a crash that segment may end in zeros that were never written: an all-zero tail is that unused
space, cut without a damage record; anything else after the last good frame is a torn tail.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lighthouse.framing import (
    FRAME_MAGIC,
    SEGMENT_HEADER,
    FrameHeader,
    parse_frame_header,
    verify_frame,
)

__all__ = ["Damage", "SegmentScan", "holds_a_valid_frame", "scan_segment"]


@dataclass(frozen=True, slots=True)
class Damage:
    """A byte range of a segment that does not hold a valid, expected frame."""

    segment: str
    start: int
    end: int
    kind: str  # "corrupt", "duplicate_frame", "missing_sequences", "torn_tail", "bad_segment_header"
    lost_first: int | None = None
    lost_last: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "segment": self.segment,
            "start": self.start,
            "end": self.end,
            "kind": self.kind,
            "lost_first": self.lost_first,
            "lost_last": self.lost_last,
        }


@dataclass(slots=True)
class SegmentScan:
    frames: list[tuple[int, FrameHeader]] = field(default_factory=list)
    damage: list[Damage] = field(default_factory=list)
    #: offset to truncate the segment at (a torn tail, or unused preallocated space), or ``None``
    truncate_at: int | None = None
    next_sequence: int = 1


_ZEROS = bytes(1 << 20)


def _all_zero(buf: Any, start: int, end: int) -> bool:
    """True if ``buf[start:end]`` holds only zero bytes (compared a megabyte at a time: no large copy)."""
    for at in range(start, end, len(_ZEROS)):
        chunk = buf[at : min(end, at + len(_ZEROS))]
        if chunk != _ZEROS[: len(chunk)]:
            return False
    return True


def holds_a_valid_frame(buf: Any, start: int = 0) -> bool:
    """Whether any verified frame begins at or after ``start`` (a resync scan, as after corruption)."""
    return _next_valid_frame(buf, start) is not None


def _next_valid_frame(buf: Any, start: int) -> tuple[int, FrameHeader] | None:
    pos = start
    while True:
        pos = buf.find(FRAME_MAGIC, pos)
        if pos < 0:
            return None
        header = parse_frame_header(buf, pos)
        if header is not None and verify_frame(buf, pos, header):
            return pos, header
        pos += 1


def scan_segment(
    buf: Any, name: str, expected_seq: int, *, is_last: bool, header_ok: bool = True, start: int = SEGMENT_HEADER
) -> SegmentScan:
    """Classify every byte range of one segment from ``start`` (a frame boundary; default: the first
    frame); ``buf`` is the whole file (bytes or mmap)."""
    scan = SegmentScan(next_sequence=expected_seq)
    if not header_ok and start == SEGMENT_HEADER:  # a resumed scan reported its header before
        scan.damage.append(Damage(name, 0, SEGMENT_HEADER, "bad_segment_header"))
    off = start
    end = len(buf)
    while off < end:
        header = parse_frame_header(buf, off)
        if header is not None and verify_frame(buf, off, header):
            expected = scan.next_sequence
            if header.first_seq == expected:
                scan.frames.append((off, header))
                scan.next_sequence = header.last_seq + 1
            elif header.first_seq < expected:
                # A valid frame we already have the sequences of: a duplicated or misdirected write.
                # Nothing is lost: the sequences it repeats are held by the earlier copy.
                scan.damage.append(Damage(name, off, off + header.size, "duplicate_frame"))
            else:
                # Sequences vanished without leaving bytes behind (e.g. a lost block): report, keep going.
                scan.damage.append(Damage(name, off, off, "missing_sequences", expected, header.first_seq - 1))
                scan.frames.append((off, header))
                scan.next_sequence = header.last_seq + 1
            off += header.size
            continue
        resync = _next_valid_frame(buf, off + 1)
        if resync is None:
            if is_last:
                scan.truncate_at = off
                if not _all_zero(buf, off, end):  # zeros only: space allocated ahead, never written
                    scan.damage.append(Damage(name, off, end, "torn_tail"))
            else:
                # A closed segment was fsynced before its successor existed: a bad tail here is corruption.
                scan.damage.append(Damage(name, off, end, "corrupt", scan.next_sequence, None))
            break
        resync_at, resync_header = resync
        lost_last = resync_header.first_seq - 1 if resync_header.first_seq > scan.next_sequence else None
        scan.damage.append(
            Damage(name, off, resync_at, "corrupt", scan.next_sequence if lost_last else None, lost_last)
        )
        if lost_last is not None:
            scan.next_sequence = lost_last + 1  # the lost range is reported once, here
        off = resync_at
    return scan


