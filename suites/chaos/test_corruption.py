"""Corruption of a closed log: damage in the middle is detected and reported, never served, never silently cut away.

Every case damages a fresh copy of a small pre-built log (a few ms per case): single bit flips, zeroed
ranges, truncation, a torn tail at every byte of the last frame (cut, and zero-filled), garbage
appended, a whole frame duplicated. Each is proven (the bytes really changed), then judged by the
oracle in :mod:`testkit.chaos.lighthouse_oracle`: ``lighthouse verify``'s exit code, what ``health()`` reports,
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

from testkit.chaos import SystemUnderTest, run_generic_corruption, settle
from testkit.chaos.lighthouse_log import PristineLog, build_pristine_log
from testkit.chaos.lighthouse_oracle import FAULT_KIND, plan_cases, run_cases
from testkit.faults import CorruptionKind, SmallTmpfs
from testkit.faults.probe import probe_tmpfs

from . import stores


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
    system = stores.lighthouse()
    testkit_record.sut = system.name
    cases = plan_cases(pristine, testkit_rng, scaled(random_cases), every_torn_byte=every_torn_byte)
    result = run_cases(pristine, cases, scratch / "work", system.spec)
    testkit_record.fault(FAULT_KIND, result.tally.proven > 0,
                         f"{result.tally.proven}/{result.tally.cases} cases changed the bytes")
    testkit_record.metric("chaos.corruption.cases", result.tally.proven, "cases", direction="higher")
    settle(result, testkit_record, fault="corruption", expected_unsafe=False, seed=testkit_seed, min_proven=0.95)


@pytest.mark.parametrize(
    ("system", "cases"),
    [
        pytest.param(stores.lighthouse(segment_bytes=8192), 120, id="lighthouse"),
        # SQLite keeps no page checksums: its adapter declares it known unsafe under corruption, and it is caught.
        pytest.param(stores.sqlite(), 120, id="sqlite"),
        pytest.param(stores.lighthouse(segment_bytes=8192), 30, id="lighthouse-smoke", marks=pytest.mark.smoke),
    ],
)
def test_generic_corruption_never_serves_a_wrong_event(
    system: SystemUnderTest, cases: int, scratch: Path, testkit_rng: random.Random, testkit_record, testkit_seed: int,
    case_seed: int, scaled,
) -> None:
    """The format-blind campaign any store gets: flips, zeroes, truncations, appended bytes in its files."""
    testkit_record.sut = system.name
    root = scratch / f"generic-{system.name}-{case_seed}"
    result = run_generic_corruption(system.spec, root, testkit_rng, case_seed, scaled(cases))
    settle(result, testkit_record, fault="corruption", expected_unsafe=system.expects_loss("corruption"),
           seed=testkit_seed, min_proven=0.9)


@pytest.mark.smoke
def test_lighthouse_verify_command_exit_codes(pristine: PristineLog, scratch: Path, testkit_rng: random.Random,
                                             testkit_record) -> None:
    """The real ``lighthouse verify`` command, end to end: 0 intact or torn tail, 1 for mid-log damage."""
    testkit_record.sut = "lighthouse"

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
