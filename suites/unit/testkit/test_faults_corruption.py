"""Corruption of closed files: the bytes really change as described, and plans are reproducible."""

from __future__ import annotations

import hashlib
import random
import shutil
from pathlib import Path

import pytest

from testkit.faults import (
    CorruptionKind,
    CorruptionPlan,
    InvalidFaultSpec,
    Target,
    append_garbage,
    duplicate_range,
    flip_bit,
    torn_tail,
    truncate_to,
    zero_range,
)

# A header then five frames of different sizes; no zero bytes, so zeroing always changes something.
HEADER = 8
FRAME_SIZES = (20, 35, 17, 50, 28)


def frame_spans() -> list[tuple[int, int]]:
    spans, start = [], HEADER
    for size in FRAME_SIZES:
        spans.append((start, start + size))
        start += size
    return spans


@pytest.fixture
def original() -> bytes:
    return bytes(random.Random(1234).randint(1, 255) for _ in range(HEADER + sum(FRAME_SIZES)))


@pytest.fixture
def segment(tmp_path: Path, original: bytes) -> Path:
    path = tmp_path / "segment.log"
    path.write_bytes(original)
    return path


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_flip_bit_changes_exactly_one_bit(segment: Path, original: bytes) -> None:
    record = flip_bit(segment, 10, 3)
    after = segment.read_bytes()
    assert record.proven, record.detail
    assert after[10] == original[10] ^ 0b1000
    assert after[:10] + after[11:] == original[:10] + original[11:]
    assert record.evidence["sha256_before"] == sha(original)
    assert record.evidence["sha256_after"] == sha(after)


def test_zero_range_zeroes_only_the_range(segment: Path, original: bytes) -> None:
    record = zero_range(segment, 20, 7)
    assert record.proven
    assert segment.read_bytes() == original[:20] + bytes(7) + original[27:]


def test_zeroing_bytes_that_are_already_zero_is_not_proven(segment: Path) -> None:
    zero_range(segment, 20, 7)
    again = zero_range(segment, 20, 7)
    assert not again.proven
    assert "unchanged" in again.detail


def test_truncate_to_cuts_the_file(segment: Path, original: bytes) -> None:
    record = truncate_to(segment, 40)
    assert record.proven
    assert segment.read_bytes() == original[:40]
    assert (record.evidence["size_before"], record.evidence["size_after"]) == (len(original), 40)


def test_torn_tail_cuts_or_zero_fills(tmp_path: Path, segment: Path, original: bytes) -> None:
    zero_filled = tmp_path / "zero-filled.log"
    shutil.copy(segment, zero_filled)
    assert torn_tail(segment, 100).proven
    assert segment.read_bytes() == original[:100]
    assert torn_tail(zero_filled, 100, zero_fill=True).proven
    assert zero_filled.read_bytes() == original[:100] + bytes(len(original) - 100)


def test_append_garbage_is_reproducible_from_the_rng(tmp_path: Path, segment: Path, original: bytes) -> None:
    twin = tmp_path / "twin.log"
    shutil.copy(segment, twin)
    assert append_garbage(segment, 33, random.Random(5)).proven
    append_garbage(twin, 33, random.Random(5))
    assert segment.read_bytes() == twin.read_bytes()
    assert segment.read_bytes()[: len(original)] == original
    assert len(segment.read_bytes()) == len(original) + 33


def test_duplicate_range_replays_a_frame(segment: Path, original: bytes) -> None:
    start, end = frame_spans()[1]
    record = duplicate_range(segment, start, end - start, end)
    assert record.proven
    assert segment.read_bytes() == original[:end] + original[start:end] + original[end:]


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda p: flip_bit(p, 0, 8),
        lambda p: flip_bit(p, 10_000, 0),
        lambda p: zero_range(p, 150, 10),
        lambda p: zero_range(p, 5, 0),
        lambda p: truncate_to(p, 158),
        lambda p: torn_tail(p, -1),
        lambda p: append_garbage(p, 0, random.Random(0)),
        lambda p: duplicate_range(p, 0, 4, 999),
    ],
    ids=[
        "bit",
        "flip-offset",
        "zero-range",
        "zero-length",
        "truncate-longer",
        "torn-negative",
        "garbage-0",
        "dup-insert",
    ],
)
def test_bad_parameters_raise_a_typed_error(segment: Path, original: bytes, corrupt) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidFaultSpec):
        corrupt(segment)
    assert segment.read_bytes() == original


def test_a_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        flip_bit(tmp_path / "absent", 0, 0)


class TestCorruptionPlan:
    def plan(self, seed: int = 9) -> CorruptionPlan:
        return CorruptionPlan(HEADER + sum(FRAME_SIZES), frame_spans(), seed=seed)

    def test_the_same_seed_gives_the_same_cases(self) -> None:
        assert list(self.plan(9).cases(200)) == list(self.plan(9).cases(200))
        assert list(self.plan(9).cases(200)) != list(self.plan(10).cases(200))

    def test_cases_land_in_their_target(self) -> None:
        spans = frame_spans()
        cases = list(self.plan().cases(500))
        assert {c.kind for c in cases} == set(CorruptionKind)
        for case in cases:
            if case.target is Target.MIDDLE_FRAME:
                assert case.frame_index is not None and case.frame_index < len(spans) - 1
                start, end = spans[case.frame_index]
                assert start <= case.offset < end, str(case)
            elif case.target is Target.LAST_FRAME:
                assert case.frame_index == len(spans) - 1
                assert spans[-1][0] <= case.offset < spans[-1][1], str(case)
            elif case.target is Target.HEADER:
                assert case.offset < HEADER and case.offset + case.length <= HEADER, str(case)
            else:
                assert case.target is Target.TAIL and case.kind is CorruptionKind.GARBAGE_TAIL

    def test_targets_can_be_restricted(self) -> None:
        cases = list(self.plan().cases(100, targets=[Target.MIDDLE_FRAME]))
        assert {c.target for c in cases} == {Target.MIDDLE_FRAME}
        assert CorruptionKind.TORN_TAIL not in {c.kind for c in cases}  # a torn tail is never in the middle

    def test_every_case_really_damages_a_copy(self, tmp_path: Path, segment: Path, original: bytes) -> None:
        victim = tmp_path / "victim.log"
        for case in self.plan().cases(300):
            victim.write_bytes(original)
            record = case.apply(victim)
            assert record.proven, f"{case}: {record.detail}"
            assert record.kind == case.kind.value

    def test_torn_tail_at_every_byte_of_the_last_frame(self, tmp_path: Path, original: bytes) -> None:
        start, end = frame_spans()[-1]
        cases = list(self.plan().torn_tails_of_last_frame())
        assert [c.offset for c in cases] == list(range(start, end))
        victim = tmp_path / "victim.log"
        for case in cases:
            victim.write_bytes(original)
            assert case.apply(victim).proven
            assert victim.read_bytes() == original[: case.offset]

    def test_without_a_layout_everything_targets_anywhere(self, tmp_path: Path, original: bytes) -> None:
        plan = CorruptionPlan(len(original), seed=3)
        victim = tmp_path / "victim.log"
        for case in plan.cases(100):
            assert case.target is Target.ANYWHERE
            victim.write_bytes(original)
            assert case.apply(victim).proven, str(case)

    def test_case_description_names_its_parameters(self) -> None:
        case = next(self.plan().cases(1, kinds=[CorruptionKind.BIT_FLIP]))
        text = str(case)
        assert text.startswith("bit_flip@") and f"offset={case.offset}" in text and f"bit={case.bit}" in text

    @pytest.mark.parametrize(
        "frames", [[(0, 10), (5, 20)], [(10, 5)], [(0, 500)]], ids=["overlap", "reversed", "outside"]
    )
    def test_bad_layouts_are_rejected(self, frames: list[tuple[int, int]]) -> None:
        with pytest.raises(InvalidFaultSpec):
            CorruptionPlan(100, frames)

    def test_a_single_frame_has_no_middle(self) -> None:
        plan = CorruptionPlan(100, [(0, 100)])
        with pytest.raises(InvalidFaultSpec):
            list(plan.cases(1, targets=[Target.MIDDLE_FRAME]))
