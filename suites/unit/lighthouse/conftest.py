"""Fixtures for the lighthouse unit suite: a coroutine runner, an event factory and on-disk tools.

The disk tools parse segment files with their own reading of the documented layout (see
``lighthouse/framing.py``) instead of calling the store's parser, so that a bug in the store's
framing cannot hide the damage a test thinks it is making.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import struct
import threading
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from testkit.aio import run_with_deadline

from lighthouse import Event, EventStore, EventType, HealthState
from testkit.chaos.lighthouse_checkpoints import recovered_state

T = TypeVar("T")

SEGMENT_HEADER_BYTES = 32
FRAME_HEADER = struct.Struct("<4sIIQIHH")  # magic, payload_len, crc32c, first_seq, count, kind, reserved
FRAME_MAGIC = b"LHF1"
FRAME_KIND_EVENTS = 1
FRAME_KIND_VOID = 2

Runner = Callable[..., Any]


def run_coroutine(coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    """Run one coroutine on a fresh loop with a deadline, so a hang fails instead of stalling the suite."""
    return run_with_deadline(coro, timeout)


@pytest.fixture(scope="session")
def run() -> Runner:
    """``run(coro, timeout=30)``: the suite's only way into asyncio (no pytest-asyncio needed)."""
    return run_coroutine


@pytest.fixture(scope="session")
def make_event() -> Callable[..., Event]:
    """``make_event(n, **overrides)``: a valid event whose data names ``n`` (three aggregates, three agents)."""
    counter = itertools.count()

    def build(n: int | None = None, **overrides: Any) -> Event:
        n = next(counter) if n is None else n
        fields: dict[str, Any] = {
            "aggregate_id": f"order:{n % 3}",
            "source_agent": f"agent-{n % 3}",
            "data": {"n": n, "text": f"event {n}"},
        }
        fields.update(overrides)
        event_type = fields.pop("event_type", EventType.COMMAND_RECEIVED)
        return Event(event_type, **fields)

    return build


@dataclass(frozen=True, slots=True)
class FrameSpan:
    """Where one frame sits in a segment file, as read from its header."""

    offset: int
    size: int
    first_seq: int
    count: int
    kind: int

    @property
    def end(self) -> int:
        return self.offset + self.size


class Disk:
    """Byte-level tools for segment files: find frames, tear them, flip bits, zero ranges."""

    @staticmethod
    def segments(directory: Path) -> list[Path]:
        return sorted(p for p in directory.glob("*.seg") if p.stem.isdigit())

    @staticmethod
    def frames(segment: Path) -> list[FrameSpan]:
        """Frames back to back from the segment header; stops at the first byte that is not a frame."""
        raw = segment.read_bytes()
        out = []
        offset = SEGMENT_HEADER_BYTES
        while offset + FRAME_HEADER.size <= len(raw):
            magic, length, _crc, first_seq, count, kind, _ = FRAME_HEADER.unpack_from(raw, offset)
            if magic != FRAME_MAGIC or offset + FRAME_HEADER.size + length > len(raw):
                break
            out.append(FrameSpan(offset, FRAME_HEADER.size + length, first_seq, count, kind))
            offset += FRAME_HEADER.size + length
        return out

    def last_segment(self, directory: Path) -> Path:
        segments = self.segments(directory)
        assert segments, f"no segment files in {directory}"
        return segments[-1]

    @staticmethod
    def truncate(path: Path, length: int) -> None:
        with open(path, "r+b") as handle:
            handle.truncate(length)

    @staticmethod
    def flip_bit(path: Path, offset: int, bit: int = 0) -> None:
        with open(path, "r+b") as handle:
            handle.seek(offset)
            byte = handle.read(1)[0]
            handle.seek(offset)
            handle.write(bytes([byte ^ (1 << bit)]))

    @staticmethod
    def overwrite(path: Path, offset: int, data: bytes) -> None:
        with open(path, "r+b") as handle:
            handle.seek(offset)
            handle.write(data)

    @staticmethod
    def copy_store(source: Path, target: Path) -> Path:
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("LOCK"))
        return target


@pytest.fixture(scope="session")
def disk() -> Disk:
    return Disk()


async def all_events(store: EventStore) -> list[Event]:
    """Every stored event in sequence order, through replay."""
    return [event async for event in store.replay()]


@pytest.fixture(scope="session")
def read_all() -> Callable[[EventStore], Awaitable[list[Event]]]:
    """``await read_all(store)``: every stored event, in order."""
    return all_events


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "store"


class GatedSyncStore(EventStore):
    """An ``EventStore`` whose data syncs wait at a gate the test controls (through the store's sync hook).

    With the gate closed a commit is written but not durable: what the store does in that window
    (acknowledge? publish? deliver?) is exactly what the durability rules are about.
    """

    inline_write_budget_s = -1.0  # the gate is opened from the event loop: never sync on the loop

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sync_entered = threading.Event()
        self.gate = threading.Event()
        self.gate.set()

    def _sync_file(self, fd: int, *, full: bool = False) -> None:
        if not full:
            self.sync_entered.set()
            assert self.gate.wait(10), "the test never opened the sync gate"
        super()._sync_file(fd, full=full)


@pytest.fixture(scope="session")
def gated_store() -> type[GatedSyncStore]:
    return GatedSyncStore



@pytest.fixture(scope="session")
def recovered() -> Callable[[EventStore], Awaitable[dict[str, Any]]]:
    """``await recovered(store)``: the store's recovered state (index, ids, versions, voids, damage)."""
    return recovered_state


async def wait_healed(store: EventStore, deadline: float = 60.0) -> None:
    """Until the store is healthy again and has recorded the void range its failed write left.

    A healed store writes that range by itself, right after its probe succeeds: a test that plants
    the next failure before that write would fail the void's write instead of its own append.
    Generous deadline: a loaded 2-core CI.
    """
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while store.health().state != HealthState.HEALTHY or store._void is not None:
        assert loop.time() < end, f"store did not heal: {store.health().reasons}, pending void {store._void}"
        await asyncio.sleep(0.005)


@pytest.fixture(scope="session")
def healed() -> Callable[[EventStore], Awaitable[None]]:
    """``await healed(store)``: healthy again, with its pending void range recorded."""
    return wait_healed
