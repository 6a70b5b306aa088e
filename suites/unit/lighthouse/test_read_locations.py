"""What the index tells a reader about each event (where its frame ends, its version, its time) is true.

A read takes those from the index instead of the frame: the frame's end sizes its one ``pread``, and
the version and time spare decoding the frame's stamp. Checked against the bytes on disk and against
a replay (which decodes whole frames), on the live store, after a reopen from a checkpoint and after
a full scan.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lighthouse import Event, EventFilter, EventStore, EventType
from lighthouse.checkpoint import CHECKPOINT_NAME
from lighthouse.index import CHUNK_ROWS, SEGMENT_END, EventIndex, hash_key


def _event(i: int) -> Event:
    hot = i % 7 == 0
    return Event(EventType.CUSTOM, aggregate_id="hot" if hot else f"agg:{i % 50}", source_agent=f"agent-{i % 5}",
                 data={"i": i, "pad": "p" * (i % 90)}, timestamp=1.0)


async def _fill(path: Path) -> None:
    """Over one index chunk of rows, in batch frames and shared single-append frames, over several segments."""
    async with EventStore(path, segment_bytes=256 * 1024) as store:
        i = 0
        while i < CHUNK_ROWS + 3000:
            await store.append_batch([_event(k) for k in range(i, i + 997)])
            i += 997
            for k in range(i, i + 3):
                await store.append(_event(k))
            i += 3


def _true_frame_ends(store: EventStore, disk) -> dict[tuple[int, int], int]:
    """(segment number, frame offset) -> where the frame ends, or SEGMENT_END for a segment's last frame."""
    ends = {}
    for segment in store._segments:
        frames = disk.frames(segment.path)
        for frame, after in zip(frames, [*frames[1:], None]):
            ends[(segment.number, frame.offset)] = SEGMENT_END if after is None else frame.end
    return ends


def _check_locations(store: EventStore, disk, replayed: list[Event], start: int, stop: int, descending: bool) -> None:
    index = store._index
    located = index.candidate_rows(start, stop, want=len(index), descending=descending)
    true_ends = _true_frame_ends(store, disk)
    by_sequence = {event.sequence: event for event in replayed}
    unknown = 0
    for sequence, segment, offset, frame_end, version, recorded_at in zip(
        located.sequences, located.segments, located.offsets, located.frame_ends, located.versions,
        located.recorded_at,
    ):
        if frame_end == 0:  # allowed only where a frame goes on past an index chunk
            unknown += 1
        else:
            assert frame_end == true_ends[(segment, offset)], (sequence, segment, offset)
        assert version == by_sequence[sequence].aggregate_version
        assert recorded_at == by_sequence[sequence].recorded_at
    assert unknown <= 2 * 1000  # at most the rows of the frames that go on past a chunk
    assert len(located) == stop - start


@pytest.mark.parametrize("reopen", ["live", "from a checkpoint", "by a full scan"])
def test_the_index_knows_each_events_frame_end_version_and_time(tmp_path: Path, run, disk, reopen: str) -> None:
    path = tmp_path / "store"

    async def scenario() -> None:
        await _fill(path)
        if reopen == "by a full scan":
            (path / CHECKPOINT_NAME).unlink()
        async with EventStore(path, segment_bytes=256 * 1024) as store:
            if reopen == "live":
                await store.append_batch([_event(k) for k in range(10**6, 10**6 + 500)])
            loaded = store._checkpoint_status.get("loaded_rows")
            assert (loaded is not None) == (reopen != "by a full scan"), store._checkpoint_status
            replayed = [event async for event in store.replay()]
            rows = len(replayed)
            for start, stop in [(0, rows), (5, CHUNK_ROWS - 7), (CHUNK_ROWS - 300, rows - 1), (1234, 1235)]:
                for descending in (False, True):
                    _check_locations(store, disk, replayed, start, stop, descending)
            # reads that take the version and time from the index return exactly what a replay decodes
            hot = await store.query(EventFilter(aggregate_ids=["hot"]), limit=5000)
            assert hot.events == [e for e in replayed if e.aggregate_id == "hot"]
            agent = await store.query(EventFilter(source_agents=["agent-3"]), limit=700, descending=True)
            assert agent.events == [e for e in reversed(replayed) if e.source_agent == "agent-3"][:700]
            for event in replayed[:: len(replayed) // 40]:
                assert await store.get(event.event_id) == event
                assert await store.get(event.sequence) == event

    run(scenario(), timeout=120)


def test_a_version_the_index_cannot_hold_is_read_from_the_frame() -> None:
    index = EventIndex()
    index.add(1, 0, 32, 0, 28, 5.0, 1, "e1", "agg", "src", None, None, 2**32)
    index.add(2, 0, 32, 1, 90, 5.0, 1, "e2", "agg", "src", None, None, 2**32 - 1)
    located = index.candidate_rows(0, 2, aggregate_hashes=[hash_key("agg")], want=2)
    assert located.versions == [0, 2**32 - 1]  # 0: "not held here", the reader decodes the frame's stamp
    assert located.frame_ends == [SEGMENT_END, SEGMENT_END]
    assert located.record_ends == [90, 0]


def test_a_read_of_a_few_records_reads_each_frame_once(tmp_path: Path, run, monkeypatch) -> None:
    """The frame-end hint sizes the one read of each frame: none is read a second time to get all of it."""
    path = tmp_path / "store"
    preads: list[int] = []

    async def scenario() -> None:
        await _fill(path)
        async with EventStore(path, segment_bytes=256 * 1024) as store:
            real = os.pread

            def counted(fd: int, size: int, offset: int) -> bytes:
                preads.append(size)
                return real(fd, size, offset)

            spans: list[tuple[int, int]] = []
            read_span = store._reader.read_span

            def spans_counted(segment: int, lo: int, hi: int, **kwargs):
                spans.append((segment, lo))
                return read_span(segment, lo, hi, **kwargs)

            monkeypatch.setattr(store._reader, "read_span", spans_counted)
            monkeypatch.setattr(os, "pread", counted)
            for descending in (False, True):
                result = await store.query(EventFilter(aggregate_ids=["hot"]), limit=2000, descending=descending)
                assert len(result.events) == 2000
            monkeypatch.undo()
            assert spans and len(preads) == len(spans)  # one pread per span: no frame read again whole

    run(scenario(), timeout=120)
