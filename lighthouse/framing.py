"""On-disk framing: segment headers and checksummed frames.

A segment file starts with a fixed header and holds frames back to back. A frame is the unit of
atomicity: a whole batch is one frame (and the single-event appends of one group commit share
another), so a crash leaves either all of a batch or none of it. Layout (little endian)::

    segment header (32 bytes): magic "LHSEG\\0\\0\\1" | format u32 | reserved u32 | first_seq u64 | crc32c u32 | pad u32
    frame header   (28 bytes): magic "LHF1" | payload_len u32 | crc32c u32 | first_seq u64 | count u32 | kind u16 | reserved u16
    payload: msgpack (recorded_at, aggregate_versions, records)  for kind EVENTS
             msgpack {"reason": str}                             for kind VOID (sequences that will never exist)

The frame CRC32C covers the header bytes after the CRC field and the payload, so a flipped bit in
the sequence number or count is caught as surely as one in the data.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

import crc32c
import msgpack

__all__ = [
    "FRAME_EVENTS",
    "FRAME_HEADER",
    "FRAME_MAGIC",
    "FRAME_VOID",
    "FORMAT_VERSION",
    "MAX_FRAME_PAYLOAD",
    "SEGMENT_HEADER",
    "SEGMENT_MAGIC",
    "FrameHeader",
    "decode_events_payload",
    "encode_events_frame",
    "encode_events_frame_with_offsets",
    "encode_segment_header",
    "encode_void_frame",
    "parse_frame_header",
    "parse_segment_header",
    "verify_frame",
]

FORMAT_VERSION = 1
SEGMENT_MAGIC = b"LHSEG\x00\x00\x01"
FRAME_MAGIC = b"LHF1"
FRAME_EVENTS = 1
FRAME_VOID = 2
#: Upper bound accepted for a payload length field: a batch limit plus generous framing slack.
MAX_FRAME_PAYLOAD = 12 * 1024 * 1024

_SEGMENT = struct.Struct("<8sIIQII")
_FRAME = struct.Struct("<4sIIQIHH")
SEGMENT_HEADER = _SEGMENT.size
FRAME_HEADER = _FRAME.size
_CRC_FROM = 12  # frame bytes covered by the CRC start after magic, length and crc


@dataclass(frozen=True, slots=True)
class FrameHeader:
    payload_len: int
    crc: int
    first_seq: int
    count: int
    kind: int

    @property
    def size(self) -> int:
        return FRAME_HEADER + self.payload_len

    @property
    def last_seq(self) -> int:
        return self.first_seq + self.count - 1


def encode_segment_header(first_seq: int) -> bytes:
    body = _SEGMENT.pack(SEGMENT_MAGIC, FORMAT_VERSION, 0, first_seq, 0, 0)
    crc = crc32c.crc32c(body[:24])
    return _SEGMENT.pack(SEGMENT_MAGIC, FORMAT_VERSION, 0, first_seq, crc, 0)


def parse_segment_header(raw: bytes) -> int | None:
    """The segment's first sequence, or ``None`` if the header is missing or damaged."""
    if len(raw) < SEGMENT_HEADER:
        return None
    magic, version, _reserved, first_seq, crc, _pad = _SEGMENT.unpack_from(raw)
    if magic != SEGMENT_MAGIC or version != FORMAT_VERSION or crc != crc32c.crc32c(raw[:24]):
        return None
    return int(first_seq)


def _frame(kind: int, first_seq: int, count: int, payload: bytes) -> bytes:
    header_tail = _FRAME.pack(FRAME_MAGIC, len(payload), 0, first_seq, count, kind, 0)[_CRC_FROM:]
    crc = crc32c.crc32c(payload, crc32c.crc32c(header_tail))
    return _FRAME.pack(FRAME_MAGIC, len(payload), crc, first_seq, count, kind, 0) + payload


def encode_events_frame(
    first_seq: int, recorded_at: float, versions: list[int], packed_records: list[bytes]
) -> bytes:
    """A frame of already-packed client records; the store adds sequence, time and versions here."""
    return encode_events_frame_with_offsets(first_seq, recorded_at, versions, packed_records)[0]


def encode_events_frame_with_offsets(
    first_seq: int, recorded_at: float, versions: list[int], packed_records: list[bytes]
) -> tuple[bytes, list[int]]:
    """``encode_events_frame`` and where each record starts, counted from the frame's first byte (the
    index keeps these so that one record is decoded without walking the records before it)."""
    packer = msgpack.Packer(use_bin_type=True)
    prefix = b"".join(
        (
            packer.pack_array_header(3),
            packer.pack(recorded_at),
            packer.pack(versions),
            packer.pack_array_header(len(packed_records)),
        )
    )
    offsets = list(accumulate(map(len, packed_records[:-1]), initial=FRAME_HEADER + len(prefix)))
    return _frame(FRAME_EVENTS, first_seq, len(packed_records), b"".join((prefix, *packed_records))), offsets


def encode_void_frame(first_seq: int, count: int, reason: str) -> bytes:
    """Marks sequences that were handed out to a failed write and will never hold events."""
    return _frame(FRAME_VOID, first_seq, count, msgpack.packb({"reason": reason}, use_bin_type=True))


def parse_frame_header(buf: Any, offset: int) -> FrameHeader | None:
    """The header at ``offset`` if its magic and length are plausible; the CRC is checked by ``verify_frame``."""
    if len(buf) - offset < FRAME_HEADER:
        return None
    magic, length, crc, first_seq, count, kind, _reserved = _FRAME.unpack_from(buf, offset)
    if magic != FRAME_MAGIC or length > MAX_FRAME_PAYLOAD or kind not in (FRAME_EVENTS, FRAME_VOID) or count == 0:
        return None
    return FrameHeader(length, crc, first_seq, count, kind)


def verify_frame(buf: Any, offset: int, header: FrameHeader) -> bool:
    """True if the whole frame is present and its checksum matches."""
    end = offset + header.size
    if end > len(buf):
        return False
    view = memoryview(buf)
    try:
        crc = crc32c.crc32c(view[offset + _CRC_FROM : offset + FRAME_HEADER])
        return crc32c.crc32c(view[offset + FRAME_HEADER : end], crc) == header.crc
    finally:
        view.release()


def decode_events_payload(payload: Any) -> tuple[float, list[int], list[list[Any]]]:
    """``(recorded_at, aggregate_versions, client_records)`` of an events frame."""
    recorded_at, versions, records = msgpack.unpackb(payload, strict_map_key=False)
    return recorded_at, versions, records
