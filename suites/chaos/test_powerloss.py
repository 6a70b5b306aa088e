"""Power cuts on a loop-mounted ext4 (``FS_IOC_SHUTDOWN``, no journal flush) and the stricter POSIX crash model.

Campaigns: :func:`testkit.chaos.run_power_cuts` and :func:`testkit.chaos.run_posix_crashes` (their
docstrings say how each cut is made real and proven).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from testkit.chaos import SystemUnderTest, run_posix_crashes, run_power_cuts, settle
from testkit.faults.probe import probe_shutdown_ioctl, probe_strace

from . import stores


@pytest.mark.parametrize(
    ("system", "default_cuts"),
    [
        pytest.param(stores.lighthouse(segment_bytes=256 * 1024), 50, id="lighthouse"),
        # Tiny segments: many cuts land right around a rotation (new file, header fsync, directory fsync).
        pytest.param(stores.lighthouse(segment_bytes=4096), 15, id="lighthouse-rotating"),
        pytest.param(stores.sqlite(), 15, id="sqlite"),
        pytest.param(stores.lighthouse(), 3, id="lighthouse-smoke", marks=pytest.mark.smoke),
    ],
)
def test_power_cut_loses_no_acknowledged_event(
    system: SystemUnderTest, default_cuts: int, tmp_path: Path, testkit_rng: random.Random, testkit_record,
    testkit_seed: int, case_seed: int, scaled, require,
) -> None:
    require("power cut (loop ext4 + FS_IOC_SHUTDOWN)", probe_shutdown_ioctl())
    testkit_record.sut = system.name
    cuts = scaled(default_cuts)
    result = run_power_cuts(system.spec, cuts, tmp_path, testkit_rng, case_seed)
    testkit_record.fault("power_cut", result.tally.proven == cuts, f"{result.tally.proven}/{cuts} cuts proven")
    settle(result, testkit_record, fault="power_cut", expected_unsafe=system.expects_loss("power_cut"),
           seed=testkit_seed)


@pytest.mark.parametrize(
    ("system", "default_crashes"),
    [
        pytest.param(stores.lighthouse(segment_bytes=4096), 15, id="lighthouse-rotating"),
        pytest.param(stores.lighthouse(), 10, id="lighthouse"),
        pytest.param(stores.sqlite(), 10, id="sqlite"),
        pytest.param(stores.lighthouse(segment_bytes=4096), 3, id="lighthouse-smoke", marks=pytest.mark.smoke),
    ],
)
def test_posix_crash_state_loses_no_acknowledged_event(
    system: SystemUnderTest, default_crashes: int, tmp_path: Path, testkit_rng: random.Random, testkit_record,
    testkit_seed: int, case_seed: int, scaled, require,
) -> None:
    """Stricter than ext4: only what was fsynced survives, a new file's name only after its directory's fsync."""
    require("strace", probe_strace())
    testkit_record.sut = system.name
    result = run_posix_crashes(system.spec, scaled(default_crashes), tmp_path, testkit_rng, case_seed)
    testkit_record.fault("posix_crash", result.tally.proven > 0,
                         f"{result.tally.proven}/{result.tally.cases} crash states dropped unsynced data")
    settle(result, testkit_record, fault="posix_crash", expected_unsafe=system.expects_loss("posix_crash"),
           seed=testkit_seed, min_proven=0.0)
