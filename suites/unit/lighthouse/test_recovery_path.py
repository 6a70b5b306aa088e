"""What recovery does to the disk, read from the system calls it makes on a real store in a tmp dir: a torn
tail's truncation, a rewritten segment header and a quarantined range are each made durable before the
store accepts an append, and a quarantine copy is published by rename only after its bytes are synced."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lighthouse import Event, EventStore, EventType, HealthState

Journal = list[tuple[str, str]]


def _path_of(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


@pytest.fixture
def journal(monkeypatch: pytest.MonkeyPatch) -> Callable[[], Journal]:
    """``start()`` begins recording every fsync, ftruncate, pwrite and rename as (call, resolved path)."""
    calls: Journal = []

    def on_fd(name: str) -> None:
        real = getattr(os, name)

        def call(fd: int, *args: Any) -> Any:
            calls.append((name, _path_of(fd)))
            return real(fd, *args)

        monkeypatch.setattr(os, name, call)

    def start() -> Journal:
        for name in ("fsync", "fdatasync", "ftruncate", "pwrite"):
            on_fd(name)
        real_replace = os.replace

        def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
            calls.append(("replace", f"{Path(src).resolve()} -> {Path(dst).resolve()}"))
            real_replace(src, dst, *args, **kwargs)

        monkeypatch.setattr(os, "replace", replace)
        return calls

    return start


async def _fill(directory: Path, count: int, **options: Any) -> list[Event]:
    async with EventStore(directory, **options) as store:
        return [await store.append(Event(EventType.CUSTOM, aggregate_id="a", data={"i": i, "pad": "p" * 300}))
                for i in range(count)]


def _after(calls: Journal, first: tuple[str, str]) -> Journal:
    assert first in calls, f"{first} never happened: {calls}"
    return calls[calls.index(first) + 1:]


def test_a_torn_tail_is_cut_and_the_cut_is_synced_before_the_first_append(
    tmp_path: Path, run, disk, journal
) -> None:
    directory = tmp_path / "s"
    stored = run(_fill(directory, 5))
    segment = disk.last_segment(directory)
    good = segment.stat().st_size
    disk.overwrite(segment, good, b"LHF1" + bytes(40))  # an append that never finished
    seg = str(segment.resolve())

    async def reopen() -> None:
        calls = journal()
        async with EventStore(directory) as store:
            assert segment.stat().st_size == good
            later = _after(calls, ("ftruncate", seg))
            assert ("fsync", seg) in later, "the truncation of the torn tail was never synced"
            appended = await store.append(Event(EventType.CUSTOM, aggregate_id="a"))
            assert ("pwrite", seg) in _after(calls, ("fsync", seg)), "the append did not follow the synced cut"
            assert appended.sequence == len(stored) + 1
            assert store.stats().torn_tail_bytes_truncated == 44
            assert store.stats().quarantined_bytes == 0, "a torn tail is not quarantined corruption"
            assert store.health().state == HealthState.HEALTHY
        (copy,) = (directory / "quarantine").glob("*.torn_tail.json")  # the cut bytes are kept aside, described
        info = json.loads(copy.read_text())
        assert (info["segment"], info["start"], info["end"], info["kind"]) == (segment.name, good, good + 44, "torn_tail")

    run(reopen())


def test_an_empty_last_segment_gets_its_header_back_synced_before_any_frame(
    tmp_path: Path, run, disk, journal
) -> None:
    directory = tmp_path / "s"
    stored = run(_fill(directory, 14, segment_bytes=4096))
    last = disk.last_segment(directory)
    disk.truncate(last, 0)  # the crash came right after the file was created
    kept = [e for e in stored if e.sequence < int(last.stem)]
    seg = str(last.resolve())

    async def reopen() -> None:
        calls = journal()
        async with EventStore(directory, segment_bytes=4096) as store:
            assert last.stat().st_size == 32, "the segment header was not rewritten"
            assert ("fsync", seg) in _after(calls, ("pwrite", seg)), "the rewritten header was never synced"
            fresh = await store.append(Event(EventType.CUSTOM, aggregate_id="a"))
            assert fresh.sequence == len(kept) + 1
        async with EventStore(directory, segment_bytes=4096) as store:
            assert [e.sequence async for e in store.replay()] == [*(e.sequence for e in kept), fresh.sequence]

    run(reopen())


def test_a_quarantined_range_is_synced_then_renamed_then_its_directory_synced(
    tmp_path: Path, run, disk, journal
) -> None:
    directory = tmp_path / "s"
    run(_fill(directory, 6))
    segment = disk.last_segment(directory)
    third = disk.frames(segment)[2]
    disk.flip_bit(segment, third.offset + third.size // 2, bit=3)

    async def reopen() -> None:
        calls = journal()
        async with EventStore(directory) as store:
            assert store.stats().quarantined_bytes == third.size
            assert store.stats().torn_tail_bytes_truncated == 0
        folder = directory.resolve() / "quarantine"
        (bad,) = folder.glob("*.bad")
        assert bad.name == f"{segment.stem}@{third.offset}-{third.end}.corrupt.bad"
        assert bad.read_bytes() == segment.read_bytes()[third.offset:third.end], "the copy is not the damaged bytes"
        tmp = bad.with_suffix(".tmp")
        renamed = ("replace", f"{tmp} -> {bad}")
        assert calls.index(("fsync", str(tmp))) < calls.index(renamed), "the copy was renamed before it was synced"
        assert ("fsync", str(folder)) in _after(calls, renamed), "the quarantine directory was never synced"
        info = json.loads(bad.with_suffix(".json").read_text())
        assert (info["start"], info["end"], info["kind"], info["segment"]) == (
            third.offset, third.end, "corrupt", segment.name)
        assert info["lost_first"] == third.first_seq and info["lost_last"] == third.first_seq + third.count - 1
        assert info["quarantined_at"] > 0

    run(reopen())


def test_the_integrity_event_recorded_on_open_is_the_stores_own_and_describes_the_damage(
    tmp_path: Path, run, disk
) -> None:
    directory = tmp_path / "s"
    run(_fill(directory, 5))
    segment = disk.last_segment(directory)
    third = disk.frames(segment)[2]
    disk.flip_bit(segment, third.offset + third.size - 2)

    async def reopen() -> None:
        async with EventStore(directory) as store:
            (event,) = [e async for e in store.replay() if e.event_type == EventType.CORRUPTION_DETECTED]
            assert event.event_id.startswith("lh:corruption:"), "not in the namespace no client can write"
            assert (event.aggregate_id, event.source_agent) == ("store:integrity", "lighthouse")
            assert event.data == {"segment": segment.name, "start": third.offset, "end": third.end, "kind": "corrupt",
                                  "lost_first": third.first_seq, "lost_last": third.first_seq + third.count - 1}

    run(reopen())


def test_recorded_at_never_goes_back_after_a_full_scan_even_when_the_clock_did(
    tmp_path: Path, run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recovery takes the newest ``recorded_at`` from the frames it scans, so a clock stepped back (NTP, a
    restored VM) after a restart cannot make the log's time run backwards."""
    directory = tmp_path / "s"
    stored = run(_fill(directory, 4))
    (directory / "index.ckpt").unlink()  # no checkpoint: recovery indexes every frame itself
    newest = stored[-1].recorded_at
    monkeypatch.setattr(time, "time", lambda: newest - 3600.0)

    async def reopen() -> None:
        async with EventStore(directory, checkpoint_every=0) as store:
            appended = await store.append(Event(EventType.CUSTOM, aggregate_id="a"))
            assert appended.recorded_at >= newest, "the log's time ran backwards across the restart"

    run(reopen())


@pytest.mark.parametrize("junk_bytes", [1, 57])
def test_garbage_between_two_good_frames_is_corruption_that_loses_no_sequence(
    tmp_path: Path, run, disk, junk_bytes: int
) -> None:
    """Junk spliced in between frames (a misdirected write) costs nothing: it is reported with no lost range,
    and the resync finds the next frame even one byte after the bad one."""
    directory = tmp_path / "s"
    stored = run(_fill(directory, 5))
    segment = disk.last_segment(directory)
    raw = segment.read_bytes()
    split = disk.frames(segment)[2].offset
    junk = b"\x5a" * junk_bytes
    segment.write_bytes(raw[:split] + junk + raw[split:])

    async def reopen() -> None:
        async with EventStore(directory) as store:
            assert [e.event_id async for e in store.replay() if e.event_type != EventType.CORRUPTION_DETECTED] == [
                e.event_id for e in stored], "an event was lost or duplicated"
            (event,) = [e async for e in store.replay() if e.event_type == EventType.CORRUPTION_DETECTED]
            assert event.data == {"segment": segment.name, "start": split, "end": split + len(junk), "kind": "corrupt",
                                  "lost_first": None, "lost_last": None}
            assert store.stats().quarantined_bytes == len(junk)

    run(reopen())


@pytest.mark.parametrize("stray", ["1.seg", "0000000000000000001x.seg", "backup-00000000000000000001.seg"])
def test_a_stray_seg_file_in_the_store_directory_is_neither_a_segment_nor_touched(
    tmp_path: Path, run, stray: str
) -> None:
    """Only ``<20 digits>.seg`` is a segment: an operator's copy or a foreign file is not scanned, truncated or
    quarantined."""
    directory = tmp_path / "s"
    stored = run(_fill(directory, 3))
    content = b"not a segment" * 5
    (directory / stray).write_bytes(content)

    async def reopen() -> None:
        async with EventStore(directory) as store:
            assert [e.event_id async for e in store.replay()] == [e.event_id for e in stored]
            assert store.stats().segments == 1
            assert store.health().damage == [] and store.health().state == HealthState.HEALTHY
            assert (await store.append(Event(EventType.CUSTOM, aggregate_id="a"))).sequence == 4
        assert (directory / stray).read_bytes() == content

    run(reopen())
