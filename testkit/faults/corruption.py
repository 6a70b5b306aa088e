"""Corruption of closed files: bit flips, zeroed ranges, truncation, torn tails, garbage, duplicates.

Each operation returns a :class:`FaultRecord` whose proof is the file itself: the digest before
and after differ *and* the damaged bytes read back as intended. An operation that changes
nothing (zeroing bytes that were already zero) is reported as not proven rather than counted.
:class:`CorruptionPlan` turns a seed and a file's frame layout into reproducible cases.
"""

from __future__ import annotations

import enum
import errno
import hashlib
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testkit.faults.errors import InvalidFaultSpec
from testkit.faults.records import FaultClock, FaultRecord

__all__ = [
    "CorruptionCase",
    "CorruptionKind",
    "CorruptionPlan",
    "Target",
    "append_garbage",
    "duplicate_range",
    "flip_bit",
    "torn_tail",
    "truncate_to",
    "zero_range",
]

_SHOWN_BYTES = 32


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _read_at(path: Path, offset: int, length: int) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(offset)
        return fh.read(length)


def _size(path: Path) -> int:
    return os.stat(path).st_size


def _check_range(path: Path, offset: int, length: int, size: int) -> None:
    if offset < 0 or length < 1 or offset + length > size:
        raise InvalidFaultSpec(f"range [{offset}, {offset + length}) is empty or outside {path} ({size} bytes)")


class _Change:
    """Captures size, digest and a window of bytes before a change, then builds the record."""

    def __init__(self, path: str | os.PathLike[str], kind: str, offset: int, length: int) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(errno.ENOENT, "no file to corrupt", str(self.path))
        if not self.path.is_file():
            raise InvalidFaultSpec(f"{self.path} is not a regular file")
        self.kind = kind
        self.offset = offset
        self.length = length
        self.clock = FaultClock()
        self.size_before = _size(self.path)
        self.sha_before = _sha256(self.path)
        self.bytes_before = _read_at(self.path, offset, min(length, _SHOWN_BYTES))

    def done(self, expected_ok: bool, detail: str, **evidence: Any) -> FaultRecord:
        sha_after = _sha256(self.path)
        size_after = _size(self.path)
        bytes_after = _read_at(self.path, self.offset, min(self.length, _SHOWN_BYTES))
        proven = expected_ok and sha_after != self.sha_before
        return self.clock.record(
            self.kind,
            proven,
            detail if proven else f"{detail} (file unchanged or not as intended)",
            path=str(self.path),
            offset=self.offset,
            length=self.length,
            size_before=self.size_before,
            size_after=size_after,
            sha256_before=self.sha_before,
            sha256_after=sha_after,
            bytes_before=self.bytes_before.hex(),
            bytes_after=bytes_after.hex(),
            **evidence,
        )


def flip_bit(path: str | os.PathLike[str], offset: int, bit: int) -> FaultRecord:
    """Invert bit ``bit`` (0 = least significant) of the byte at ``offset``."""
    if not 0 <= bit <= 7:
        raise InvalidFaultSpec(f"bit must be in 0..7, got {bit}")
    change = _Change(path, "bit_flip", offset, 1)
    _check_range(change.path, offset, 1, change.size_before)
    flipped = change.bytes_before[0] ^ (1 << bit)
    with open(change.path, "r+b") as fh:
        fh.seek(offset)
        fh.write(bytes([flipped]))
    ok = _read_at(change.path, offset, 1) == bytes([flipped])
    return change.done(ok, f"flipped bit {bit} at offset {offset}", bit=bit)


def zero_range(path: str | os.PathLike[str], offset: int, length: int) -> FaultRecord:
    """Overwrite ``length`` bytes at ``offset`` with zeros (not proven if they were already zero)."""
    change = _Change(path, "zero_range", offset, length)
    _check_range(change.path, offset, length, change.size_before)
    with open(change.path, "r+b") as fh:
        fh.seek(offset)
        fh.write(bytes(length))
    ok = _read_at(change.path, offset, length) == bytes(length)
    return change.done(ok, f"zeroed {length} bytes at offset {offset}")


def truncate_to(path: str | os.PathLike[str], size: int) -> FaultRecord:
    """Cut the file to ``size`` bytes (must be shorter than it is)."""
    before = _size(Path(path))
    if not 0 <= size < before:
        raise InvalidFaultSpec(f"size must be in [0, {before}), got {size}")
    change = _Change(path, "truncate", size, before - size)
    os.truncate(change.path, size)
    return change.done(_size(change.path) == size, f"truncated from {change.size_before} to {size} bytes")


def torn_tail(path: str | os.PathLike[str], cut_at: int, *, zero_fill: bool = False) -> FaultRecord:
    """A write torn at ``cut_at``: the tail is gone, or with ``zero_fill`` it reads as zeros.

    ``zero_fill`` models a file whose size was extended but whose data never reached the disk.
    """
    size = _size(Path(path))
    if not 0 <= cut_at < size:
        raise InvalidFaultSpec(f"cut_at must be in [0, {size}), got {cut_at}")
    change = _Change(path, "torn_tail", cut_at, size - cut_at)
    if zero_fill:
        with open(change.path, "r+b") as fh:
            fh.seek(cut_at)
            fh.write(bytes(size - cut_at))
        ok = _read_at(change.path, cut_at, size) == bytes(size - cut_at)
    else:
        os.truncate(change.path, cut_at)
        ok = _size(change.path) == cut_at
    how = "zero-filled" if zero_fill else "cut off"
    return change.done(ok, f"tail from offset {cut_at} {how}", zero_fill=zero_fill)


def append_garbage(path: str | os.PathLike[str], n: int, rng: random.Random) -> FaultRecord:
    """Append ``n`` random bytes drawn from the caller's seeded ``rng``."""
    if n < 1:
        raise InvalidFaultSpec(f"n must be >= 1, got {n}")
    size = _size(Path(path))
    change = _Change(path, "garbage_tail", size, n)
    garbage = rng.randbytes(n)
    with open(change.path, "ab") as fh:
        fh.write(garbage)
    ok = _read_at(change.path, size, n) == garbage
    return change.done(ok, f"appended {n} garbage bytes at offset {size}")


def duplicate_range(path: str | os.PathLike[str], offset: int, length: int, insert_at: int) -> FaultRecord:
    """Copy ``[offset, offset+length)`` and insert it at ``insert_at``, shifting the rest (a replayed frame)."""
    change = _Change(path, "duplicate_range", insert_at, length)
    _check_range(change.path, offset, length, change.size_before)
    if not 0 <= insert_at <= change.size_before:
        raise InvalidFaultSpec(f"insert_at must be in [0, {change.size_before}], got {insert_at}")
    copied = _read_at(change.path, offset, length)
    with open(change.path, "r+b") as fh:
        fh.seek(insert_at)
        rest = fh.read()
        fh.seek(insert_at)
        fh.write(copied + rest)
    ok = _read_at(change.path, insert_at, length) == copied and _size(change.path) == change.size_before + length
    return change.done(ok, f"duplicated [{offset}, {offset + length}) at offset {insert_at}", source_offset=offset)


class CorruptionKind(enum.StrEnum):
    BIT_FLIP = "bit_flip"
    ZERO_RANGE = "zero_range"
    TRUNCATE = "truncate"
    TORN_TAIL = "torn_tail"
    GARBAGE_TAIL = "garbage_tail"
    DUPLICATE_RANGE = "duplicate_range"


class Target(enum.StrEnum):
    """Where damage lands, which decides what a correct store must do about it."""

    HEADER = "header"  # before the first frame
    MIDDLE_FRAME = "middle_frame"  # good frames follow: must be reported, never truncated away
    LAST_FRAME = "last_frame"  # a torn append: may be truncated on recovery
    TAIL = "tail"  # past the last frame (appended garbage)
    ANYWHERE = "anywhere"  # no frame layout given


@dataclass(frozen=True, slots=True)
class CorruptionCase:
    """One reproducible corruption; ``str(case)`` names every parameter for a failure message."""

    kind: CorruptionKind
    target: Target
    offset: int
    length: int = 0
    bit: int = 0
    insert_at: int = 0
    garbage_seed: int = 0
    frame_index: int | None = None
    zero_fill: bool = False

    def apply(self, path: str | os.PathLike[str]) -> FaultRecord:
        """Damage ``path`` in place (use a copy of the pristine file for each case)."""
        match self.kind:
            case CorruptionKind.BIT_FLIP:
                return flip_bit(path, self.offset, self.bit)
            case CorruptionKind.ZERO_RANGE:
                return zero_range(path, self.offset, self.length)
            case CorruptionKind.TRUNCATE:
                return truncate_to(path, self.offset)
            case CorruptionKind.TORN_TAIL:
                return torn_tail(path, self.offset, zero_fill=self.zero_fill)
            case CorruptionKind.GARBAGE_TAIL:
                return append_garbage(path, self.length, random.Random(self.garbage_seed))
            case CorruptionKind.DUPLICATE_RANGE:
                return duplicate_range(path, self.offset, self.length, self.insert_at)
        raise InvalidFaultSpec(f"unknown corruption kind {self.kind!r}")

    def __str__(self) -> str:
        fields = [f"{self.kind}@{self.target}", f"offset={self.offset}"]
        if self.frame_index is not None:
            fields.append(f"frame={self.frame_index}")
        if self.kind in (CorruptionKind.ZERO_RANGE, CorruptionKind.GARBAGE_TAIL, CorruptionKind.DUPLICATE_RANGE):
            fields.append(f"length={self.length}")
        if self.kind is CorruptionKind.BIT_FLIP:
            fields.append(f"bit={self.bit}")
        if self.kind is CorruptionKind.DUPLICATE_RANGE:
            fields.append(f"insert_at={self.insert_at}")
        if self.kind is CorruptionKind.GARBAGE_TAIL:
            fields.append(f"garbage_seed={self.garbage_seed}")
        if self.zero_fill:
            fields.append("zero_fill")
        return " ".join(fields)


Span = tuple[int, int]


class CorruptionPlan:
    """Seeded corruption cases for a file of ``file_size`` bytes laid out as ``frames``.

    ``frames`` are half-open ``(start, end)`` byte spans in file order (a store's records). Without
    them the file is one region and every case targets :attr:`Target.ANYWHERE`.
    """

    def __init__(self, file_size: int, frames: Sequence[Span] | None = None, *, seed: int = 0) -> None:
        if file_size < 1:
            raise InvalidFaultSpec(f"file_size must be >= 1, got {file_size}")
        spans = [(int(s), int(e)) for s, e in (frames or [(0, file_size)])]
        previous_end = 0
        for start, end in spans:
            if not previous_end <= start < end <= file_size:
                raise InvalidFaultSpec(
                    f"frames must be sorted, non-empty, non-overlapping spans within the file; bad {start, end}"
                )
            previous_end = end
        self.file_size = file_size
        self.frames: tuple[Span, ...] = tuple(spans)
        self.has_layout = frames is not None
        self.seed = seed

    @classmethod
    def for_file(
        cls, path: str | os.PathLike[str], frames: Sequence[Span] | None = None, *, seed: int = 0
    ) -> CorruptionPlan:
        return cls(_size(Path(path)), frames, seed=seed)

    def _frame_choices(self, target: Target) -> list[int]:
        last = len(self.frames) - 1
        if target is Target.MIDDLE_FRAME:
            return list(range(last))
        if target in (Target.LAST_FRAME, Target.ANYWHERE):
            return [last]
        raise InvalidFaultSpec(f"{target} is not a frame target")

    def targets_for(self, kind: CorruptionKind) -> list[Target]:
        """The targets this layout allows for ``kind`` (a middle frame needs at least two frames)."""
        if not self.has_layout:
            return [Target.ANYWHERE]
        middle = [Target.MIDDLE_FRAME] if len(self.frames) > 1 else []
        header = [Target.HEADER] if self.frames[0][0] > 0 else []
        match kind:
            case CorruptionKind.TORN_TAIL:
                return [Target.LAST_FRAME]
            case CorruptionKind.GARBAGE_TAIL:
                return [Target.TAIL]
            case CorruptionKind.TRUNCATE:
                return [*middle, Target.LAST_FRAME]
            case CorruptionKind.DUPLICATE_RANGE:
                return [*middle, Target.LAST_FRAME]
            case _:
                return header + middle + [Target.LAST_FRAME]

    def case(self, rng: random.Random, kind: CorruptionKind, target: Target) -> CorruptionCase:
        """Draw one case of ``kind`` aimed at ``target``."""
        if target not in self.targets_for(kind):
            raise InvalidFaultSpec(f"{kind} cannot target {target} in this layout")
        if target is Target.TAIL:
            return CorruptionCase(
                kind, target, self.file_size, length=rng.randint(1, 256), garbage_seed=rng.getrandbits(32)
            )
        if target is Target.HEADER:
            index, (start, end) = None, (0, self.frames[0][0])
        else:
            index = rng.choice(self._frame_choices(target))
            start, end = self.frames[index]
        if not self.has_layout:
            index = None
            start, end = 0, self.file_size
        offset = rng.randrange(start, end)
        match kind:
            case CorruptionKind.BIT_FLIP:
                return CorruptionCase(kind, target, offset, 1, bit=rng.randrange(8), frame_index=index)
            case CorruptionKind.ZERO_RANGE:
                length = rng.randint(1, min(end - offset, 64))
                return CorruptionCase(kind, target, offset, length, frame_index=index)
            case CorruptionKind.TRUNCATE | CorruptionKind.TORN_TAIL:
                return CorruptionCase(
                    kind,
                    target,
                    offset,
                    frame_index=index,
                    zero_fill=kind is CorruptionKind.TORN_TAIL and rng.random() < 0.25,
                )
            case CorruptionKind.GARBAGE_TAIL:
                return CorruptionCase(
                    kind, target, self.file_size, length=rng.randint(1, 256), garbage_seed=rng.getrandbits(32)
                )
            case CorruptionKind.DUPLICATE_RANGE if self.has_layout:
                return CorruptionCase(kind, target, start, end - start, insert_at=end, frame_index=index)
            case CorruptionKind.DUPLICATE_RANGE:
                length = rng.randint(1, min(end - offset, 64))
                return CorruptionCase(kind, target, offset, length, insert_at=offset + length)
        raise InvalidFaultSpec(f"unknown corruption kind {kind!r}")

    def cases(
        self,
        n: int,
        *,
        kinds: Sequence[CorruptionKind] = tuple(CorruptionKind),
        targets: Sequence[Target] | None = None,
    ) -> Iterator[CorruptionCase]:
        """``n`` cases drawn with this plan's seed: the same seed gives the same cases."""
        if n < 0:
            raise InvalidFaultSpec(f"n must be >= 0, got {n}")
        rng = random.Random(self.seed)
        combos = [
            (kind, target)
            for kind in kinds
            for target in self.targets_for(kind)
            if targets is None or target in targets
        ]
        if n and not combos:
            raise InvalidFaultSpec(f"no kind in {list(kinds)} can target {targets} in this layout")
        for _ in range(n):
            kind, target = rng.choice(combos)
            yield self.case(rng, kind, target)

    def torn_tails_of_last_frame(self, *, zero_fill: bool = False) -> Iterator[CorruptionCase]:
        """A torn tail at every byte of the last frame (cut at its first byte up to its last)."""
        index = len(self.frames) - 1
        start, end = self.frames[index]
        target = Target.LAST_FRAME if self.has_layout else Target.ANYWHERE
        for cut_at in range(start, end):
            yield CorruptionCase(
                CorruptionKind.TORN_TAIL,
                target,
                cut_at,
                frame_index=index if self.has_layout else None,
                zero_fill=zero_fill,
            )
