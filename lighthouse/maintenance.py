"""Offline inspection and repair of a data directory (what ``lighthouse verify/repair/info/dump`` run).

Verification never writes. Repair takes the directory lock, copies each damaged segment's intact
frames into a new file, records the lost sequences as a void frame (so the gap is explained, not
silent, and the numbers are never reused), fsyncs it and swaps it in; the original bytes of every
damaged range are kept in ``quarantine/`` first.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lighthouse.framing import FRAME_EVENTS, encode_segment_header, encode_void_frame
from lighthouse.models import Event
from lighthouse.recovery import Damage
from lighthouse.segments import SegmentReport, decode_frame, scan_directory
from lighthouse.snapshots import fsync_directory

__all__ = ["DirectoryReport", "dump_events", "repair_directory", "verify_directory"]


@dataclass(slots=True)
class DirectoryReport:
    path: Path
    segments: int = 0
    frames: int = 0
    events: int = 0
    bytes: int = 0
    first_sequence: int | None = None
    last_sequence: int | None = None
    damage: list[Damage] = field(default_factory=list)
    voided: list[tuple[int, int]] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not [d for d in self.damage if d.kind != "torn_tail"]

    @property
    def lost_sequences(self) -> list[tuple[int, int]]:
        return [
            (d.lost_first, d.lost_last)
            for d in self.damage
            if d.lost_first is not None and d.lost_last is not None and d.lost_last >= d.lost_first
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "intact": self.intact,
            "segments": self.segments,
            "frames": self.frames,
            "events": self.events,
            "bytes": self.bytes,
            "first_sequence": self.first_sequence,
            "last_sequence": self.last_sequence,
            "damage": [d.to_dict() for d in self.damage],
            "lost_sequences": [list(r) for r in self.lost_sequences],
            "voided_sequences": [list(r) for r in self.voided],
        }


def _summarise(path: Path, reports: list[SegmentReport]) -> DirectoryReport:
    out = DirectoryReport(path, segments=len(reports))
    for report in reports:
        out.bytes += report.size
        out.damage.extend(report.scan.damage)
        for _offset, header in report.scan.frames:
            out.frames += 1
            if header.kind == FRAME_EVENTS:
                out.events += header.count
                if out.first_sequence is None:
                    out.first_sequence = header.first_seq
                out.last_sequence = header.last_seq
            else:
                out.voided.append((header.first_seq, header.last_seq))
    return out


def verify_directory(path: str | os.PathLike[str]) -> DirectoryReport:
    """Scan every frame of every segment and report damage; never modifies anything."""
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory")
    return _summarise(root, scan_directory(root))


def repair_directory(path: str | os.PathLike[str]) -> DirectoryReport:
    """Rewrite damaged segments without their damaged ranges; returns the report from before repair."""
    from lighthouse.store import EventStore  # opening quarantines the damage and takes the lock

    root = Path(path)
    before = verify_directory(root)

    async def _quarantine_under_lock() -> None:
        store = await EventStore.open(root)
        await store.close()

    asyncio.run(_quarantine_under_lock())
    reports = scan_directory(root)
    lock_fd = os.open(root / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        import fcntl

        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        for report in reports:
            if any(d.kind != "torn_tail" for d in report.scan.damage):
                _rewrite_segment(report)
        fsync_directory(root)
    finally:
        os.close(lock_fd)
    return before


def _rewrite_segment(report: SegmentReport) -> None:
    raw = report.path.read_bytes()
    out = bytearray(encode_segment_header(report.first_seq_from_name))
    expected: int | None = None
    for offset, header in report.scan.frames:
        if expected is not None and header.first_seq > expected:
            out += encode_void_frame(expected, header.first_seq - expected, "lost to corruption; removed by repair")
        out += raw[offset : offset + header.size]
        expected = header.last_seq + 1
    for damage in report.scan.damage:
        # Lost ranges that end this segment (bounded by the next one) are voided here too.
        if damage.lost_first is not None and damage.lost_last is not None and (
            expected is None or damage.lost_first >= expected
        ):
            out += encode_void_frame(
                damage.lost_first, damage.lost_last - damage.lost_first + 1, "lost to corruption; removed by repair"
            )
            expected = damage.lost_last + 1
    tmp = report.path.with_suffix(".seg.repair")
    with open(tmp, "wb") as handle:
        handle.write(out)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, report.path)


def dump_events(path: str | os.PathLike[str], *, from_sequence: int = 1, limit: int | None = None) -> Iterator[Event]:
    """Every intact event in sequence order, straight from the segments (no lock, no index)."""
    root = Path(path)
    emitted = 0
    for report in scan_directory(root):
        if not report.scan.frames:
            continue
        raw = report.path.read_bytes()
        for offset, header in report.scan.frames:
            if header.last_seq < from_sequence or header.kind != FRAME_EVENTS:
                continue
            for event in decode_frame(raw, offset, header):
                if event.sequence >= from_sequence:
                    yield event
                    emitted += 1
                    if limit is not None and emitted >= limit:
                        return

