"""Lighthouse segment files read with the kit's own parser, and a small pre-built log to damage.

The corruption oracle must not trust the store's framing code (a bug there would hide the damage a
test thinks it makes), so segments are parsed here from the layout documented in
``lighthouse/framing.py``: a 32-byte segment header, then frames of a 28-byte header
``<4sIIQIHH`` (magic, payload length, crc, first sequence, count, kind, reserved) and a payload.
"""

from __future__ import annotations

import asyncio
import random
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testkit.adapters import AdapterSpec, StoredEvent
from testkit.checkers import History, OpKind
from testkit.data import AgentSessionGenerator, PayloadSizes
from testkit.faults import append_garbage, flip_bit
from testkit.faults.records import FaultRecord

__all__ = ["Frame", "PristineLog", "Segment", "build_pristine_log", "flip_bit_mid_log", "read_segments",
           "tear_last_segment"]

SEGMENT_HEADER_BYTES = 32
FRAME_HEADER = struct.Struct("<4sIIQIHH")
FRAME_MAGIC = b"LHF1"
LIGHTHOUSE_FACTORY = "testkit.adapters.lighthouse:LighthouseAdapter"


@dataclass(frozen=True, slots=True)
class Frame:
    start: int
    end: int
    first_seq: int
    count: int

    @property
    def sequences(self) -> range:
        return range(self.first_seq, self.first_seq + self.count)


@dataclass(frozen=True, slots=True)
class Segment:
    name: str
    size: int
    frames: tuple[Frame, ...]


def read_segments(directory: Path) -> list[Segment]:
    """Every segment of an intact log, in order, with its frames (raises on anything unexpected)."""
    segments = []
    for path in sorted(directory.glob("*.seg")):
        data = path.read_bytes()
        frames, offset = [], SEGMENT_HEADER_BYTES
        while offset < len(data):
            magic, length, _crc, first, count, _kind, _ = FRAME_HEADER.unpack_from(data, offset)
            if magic != FRAME_MAGIC:
                raise ValueError(f"{path.name}: no frame at {offset}; the pristine log must be intact")
            end = offset + FRAME_HEADER.size + length
            frames.append(Frame(offset, end, first, count))
            offset = end
        segments.append(Segment(path.name, len(data), tuple(frames)))
    return segments


@dataclass(frozen=True)
class PristineLog:
    """An intact log, every event of it acknowledged, with the history that wrote it."""

    directory: Path
    history: History
    events: dict[int, StoredEvent]  # by sequence, as the store acknowledged them
    segments: tuple[Segment, ...]
    spare: dict[str, Any]  # a generated event never appended: what a test appends after recovery

    def frame_of(self, sequence: int) -> tuple[int, Frame]:
        for number, segment in enumerate(self.segments):
            for frame in segment.frames:
                if sequence in frame.sequences:
                    return number, frame
        raise KeyError(sequence)


async def _write(
    directory: Path, seed: int, operations: int, segment_bytes: int
) -> tuple[History, dict[int, StoredEvent], dict[str, Any]]:
    adapter = AdapterSpec("lighthouse", LIGHTHOUSE_FACTORY, {"segment_bytes": segment_bytes}).create(directory)
    history = History()
    sizes = PayloadSizes(max_bytes=1024, tail_start_bytes=1024)
    stream = AgentSessionGenerator(seed, agents=3, payload_sizes=sizes).events()
    acknowledged: dict[int, StoredEvent] = {}
    await adapter.open()
    try:
        for number in range(operations):
            last = number == operations - 1
            batch = not last and number % 4 == 1
            events = [next(stream) for _ in range(3 if batch else 1)]
            if last:  # a small last frame: torn tails are cut at each of its bytes
                while len(str(events[0].get("data"))) > 200:
                    events = [next(stream)]
            with history.track(OpKind.APPEND_BATCH if batch else OpKind.APPEND, events) as call:
                stored: Any = await (adapter.append_batch(events) if batch else adapter.append(events[0]))
                call.ok(stored)
            for event in stored if batch else [stored]:
                acknowledged[event.sequence] = event
    finally:
        await adapter.close()
    return history, acknowledged, next(stream)


def build_pristine_log(directory: Path, *, seed: int, operations: int = 48, segment_bytes: int = 8192) -> PristineLog:
    """Write a few segments of agent traffic (single appends and batches of three) and close cleanly."""
    history, events, spare = asyncio.run(_write(directory, seed, operations, segment_bytes))
    segments = tuple(read_segments(directory))
    if len(segments) < 3:
        raise ValueError(f"the pristine log has {len(segments)} segments; raise operations or lower segment_bytes")
    return PristineLog(directory, history, events, segments, spare)


def tear_last_segment(data_dir: Path, rng: random.Random) -> None:
    """A torn write at the end of the newest segment: a few random bytes of a frame that never finished."""
    segments = sorted(data_dir.glob("*.seg"))
    if segments:
        append_garbage(segments[-1], rng.randint(1, 200), rng).require()


def flip_bit_mid_log(data_dir: Path) -> FaultRecord:
    """One flipped bit in the middle of the first segment: damage with good frames after it."""
    segment = sorted(data_dir.glob("*.seg"))[0]
    return flip_bit(segment, segment.stat().st_size // 2, 3)
