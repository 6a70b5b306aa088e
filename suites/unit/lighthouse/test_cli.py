"""The `lighthouse` command on real data directories, run as a real process."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from lighthouse import Event, EventStore, EventType
from lighthouse.framing import FRAME_HEADER, SEGMENT_HEADER, parse_frame_header
from lighthouse.segments import list_segments


def lighthouse(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lighthouse.cli", *args], capture_output=True, text=True, timeout=120
    )


def fill(directory: Path, count: int) -> list[Event]:
    async def main() -> list[Event]:
        async with EventStore(directory) as store:
            return [
                await store.append(Event(EventType.CUSTOM, aggregate_id=f"a:{i}", event_id=f"e{i}", data={"i": i}))
                for i in range(count)
            ]

    return asyncio.run(main())


def frame_offsets(segment: Path) -> list[int]:
    raw = segment.read_bytes()
    offsets, off = [], SEGMENT_HEADER
    while off < len(raw):
        header = parse_frame_header(raw, off)
        assert header is not None
        offsets.append(off)
        off += header.size
    return offsets


def corrupt_middle_frame(directory: Path, which: int) -> None:
    (segment,) = list_segments(directory)
    offset = frame_offsets(segment)[which]
    raw = bytearray(segment.read_bytes())
    raw[offset + FRAME_HEADER + 3] ^= 0x40
    segment.write_bytes(bytes(raw))


def test_verify_exit_codes_and_json(tmp_path: Path) -> None:
    directory = tmp_path / "data"
    fill(directory, 6)
    intact = lighthouse("verify", str(directory), "--json")
    assert intact.returncode == 0, intact.stderr
    report = json.loads(intact.stdout)
    assert report["intact"] and report["events"] == 6 and report["last_sequence"] == 6

    corrupt_middle_frame(directory, 2)
    damaged = lighthouse("verify", str(directory), "--json")
    assert damaged.returncode == 1
    report = json.loads(damaged.stdout)
    assert not report["intact"]
    assert report["lost_sequences"] == [[3, 3]]
    assert report["events"] == 5

    text = lighthouse("verify", str(directory))
    assert text.returncode == 1 and "DAMAGED" in text.stdout and "lost sequences 3..3" in text.stdout

    missing = lighthouse("verify", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "nowhere" in missing.stderr
    usage = lighthouse("verify")
    assert usage.returncode == 2


def test_repair_removes_the_damage_keeps_the_bytes_and_never_reuses_sequences(tmp_path: Path) -> None:
    directory = tmp_path / "data"
    stored = fill(directory, 6)
    corrupt_middle_frame(directory, 2)
    before = list_segments(directory)[0].read_bytes()

    repaired = lighthouse("repair", str(directory), "--json")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    result = json.loads(repaired.stdout)
    assert result["before"]["lost_sequences"] == [[3, 3]]
    assert result["after"]["intact"]
    assert [3, 3] in result["after"]["voided_sequences"]
    assert any(p.suffix == ".bad" for p in (directory / "quarantine").iterdir()), "the damaged bytes were not kept"
    assert list_segments(directory)[0].read_bytes() != before

    async def reopen() -> None:
        async with EventStore(directory) as store:
            health = store.health()
            assert health.lost_sequences == [] and (3, 3) in health.voided_sequences
            for event in stored:
                if event.sequence != 3:
                    assert (await store.get(event.event_id)).data == event.data
            fresh = await store.append(Event(EventType.CUSTOM, aggregate_id="after:repair"))
            assert fresh.sequence > max(e.sequence for e in stored), "a sequence was reused after repair"

    asyncio.run(reopen())
    assert lighthouse("verify", str(directory)).returncode == 0


def test_dump_and_info(tmp_path: Path) -> None:
    directory = tmp_path / "data"
    stored = fill(directory, 5)
    dumped = lighthouse("dump", str(directory), "--from", "2", "--limit", "3")
    assert dumped.returncode == 0, dumped.stderr
    lines = [json.loads(line) for line in dumped.stdout.splitlines()]
    assert [line["sequence"] for line in lines] == [2, 3, 4]
    assert [line["event_id"] for line in lines] == [e.event_id for e in stored[1:4]]
    assert lines[0]["event_type"] == "custom" and lines[0]["data"] == {"i": 1}

    info = lighthouse("info", str(directory))
    assert info.returncode == 0 and "events 5" in info.stdout
