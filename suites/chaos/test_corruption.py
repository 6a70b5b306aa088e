"""Corruption of a closed log: damage in the middle is detected and reported, never served, never silently cut away.

Every case damages a fresh copy of a small pre-built log (a few ms per case): single bit flips, zeroed
ranges, truncation, a torn tail at every byte of the last frame (cut, and zero-filled), garbage
appended, a whole frame duplicated. Each is proven (the bytes really changed), then judged by the
oracle in :mod:`corruption_oracle`: ``lighthouse verify``'s exit code, what ``health()`` reports,
every recovered event equal to what was written, every intact event still there, every loss
declared, and the store still appending (with a fresh sequence) after recovery.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.faults import CorruptionKind, SmallTmpfs
from testkit.faults.probe import probe_tmpfs

from . import stores
from .corruption_oracle import FAULT_KIND, plan_cases, run_cases
from .judging import Tally
from .logfiles import PristineLog, build_pristine_log


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A tmpfs when we can mount one (fsync is free there, and these tests judge detection, not durability)."""
    if probe_tmpfs():
        with SmallTmpfs(256 * 1024 * 1024) as fs:
            yield fs.path
    else:
        yield tmp_path_factory.mktemp("corruption")


@pytest.fixture(scope="module")
def pristine(scratch: Path, testkit_seed: int) -> PristineLog:
    return build_pristine_log(scratch / "pristine", seed=testkit_seed)


@pytest.mark.parametrize(
    ("random_cases", "every_torn_byte"),
    [pytest.param(700, True, id="full"), pytest.param(40, False, id="smoke", marks=pytest.mark.smoke)],
)
def test_corruption_is_detected_reported_and_never_served(
    random_cases: int, every_torn_byte: bool, pristine: PristineLog, scratch: Path, testkit_rng: random.Random,
    testkit_record, testkit_seed: int, scaled,
) -> None:
    testkit_record.sut = "lighthouse"
    cases = plan_cases(pristine, testkit_rng, scaled(random_cases), every_torn_byte=every_torn_byte)
    tally = Tally(FAULT_KIND, "lighthouse")
    failures = run_cases(pristine, cases, scratch / "work", stores.lighthouse(), tally)
    tally.record(testkit_record)
    testkit_record.fault(FAULT_KIND, tally.proven > 0, f"{tally.proven}/{tally.cases} cases changed the bytes")
    testkit_record.metric("chaos.corruption.cases", tally.proven, "cases", direction="higher")
    assert tally.proven >= 0.95 * tally.cases, f"seed {testkit_seed}: only {tally.proven}/{tally.cases} proven"
    assert not failures, f"seed {testkit_seed}: {len(failures)} of {tally.proven} cases failed:\n" + "\n".join(failures[:8])


@pytest.mark.smoke
def test_lighthouse_verify_command_exit_codes(pristine: PristineLog, scratch: Path, testkit_rng: random.Random) -> None:
    """The real ``lighthouse verify`` command, end to end: 0 intact or torn tail, 1 for mid-log damage."""

    def verify(directory: Path) -> int:
        return subprocess.run([sys.executable, "-m", "lighthouse.cli", "verify", str(directory)],
                              capture_output=True, timeout=60, check=False).returncode

    assert verify(pristine.directory) == 0
    flips = plan_cases(pristine, testkit_rng, 1, every_torn_byte=False, kinds=(CorruptionKind.BIT_FLIP,),
                       targets=("middle_frame",))
    torn = plan_cases(pristine, testkit_rng, 1, every_torn_byte=False, kinds=(CorruptionKind.TORN_TAIL,))
    for (segment, case), wanted in ((flips[0], 1), (torn[0], 0)):
        directory = scratch / f"verify-{case.kind}"
        shutil.copytree(pristine.directory, directory)
        case.apply(directory / pristine.segments[segment].name).require()
        if case.kind is CorruptionKind.TORN_TAIL and segment != len(pristine.segments) - 1:
            wanted = 1  # a torn closed segment is corruption, not a crash
        assert verify(directory) == wanted, f"{pristine.segments[segment].name} {case}"
