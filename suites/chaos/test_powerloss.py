"""Power cuts: the data directory lives on a loop-mounted ext4 that is shut down (no journal flush) mid-write.

After the ``FS_IOC_SHUTDOWN`` ioctl the disk keeps exactly what was fsynced; the image is unmounted and
mounted again, the store recovers, and the checker compares the log with the clients' journals (kept on
another filesystem, so they survive the cut). The same image carries a growing log across all cuts.
The worker is frozen (SIGSTOP) just before the ioctl: the shutdown takes milliseconds, and an fdatasync
racing with it can return success for data that does not survive, which a real power cut (the
process stops at the same instant as the disk) never shows.

A second fault kind, the POSIX crash state, is stricter than ext4: it keeps only what POSIX promises
(see :mod:`testkit.faults.persistence`), which is how a missing directory fsync becomes visible here.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from testkit.adapters import AdapterSpec
from testkit.faults.probe import probe_shutdown_ioctl, probe_strace

from . import stores
from .campaigns import run_posix_crashes, run_power_cuts


@pytest.mark.parametrize(
    ("adapter", "default_cuts"),
    [
        pytest.param(stores.lighthouse(segment_bytes=256 * 1024), 50, id="lighthouse"),
        # Tiny segments: many cuts land right around a rotation (new file, header fsync, directory fsync).
        pytest.param(stores.lighthouse(segment_bytes=4096), 15, id="lighthouse-rotating"),
        pytest.param(stores.sqlite(), 15, id="sqlite"),
        pytest.param(stores.lighthouse(), 3, id="lighthouse-smoke", marks=pytest.mark.smoke),
    ],
)
def test_power_cut_loses_no_acknowledged_event(
    adapter: AdapterSpec, default_cuts: int, tmp_path: Path, testkit_rng: random.Random, testkit_record,
    testkit_seed: int, case_seed: int, scaled, require,
) -> None:
    require("power cut (loop ext4 + FS_IOC_SHUTDOWN)", probe_shutdown_ioctl())
    testkit_record.sut = adapter.name
    cuts = scaled(default_cuts)
    result = run_power_cuts(adapter, cuts, tmp_path, testkit_rng, case_seed)
    result.tally.record(testkit_record)
    result.timeline.record(testkit_record)
    testkit_record.fault("power_cut", result.tally.proven == cuts, f"{result.tally.proven}/{cuts} cuts proven")
    assert result.tally.proven == cuts, f"seed {testkit_seed}: only {result.tally.proven}/{cuts} power cuts proven"
    assert not result.failures, (
        f"seed {testkit_seed}: {len(result.failures)} failing checks:\n" + "\n".join(result.failures[:5]))


@pytest.mark.parametrize(
    ("adapter", "default_crashes"),
    [
        pytest.param(stores.lighthouse(segment_bytes=4096), 15, id="lighthouse-rotating"),
        pytest.param(stores.lighthouse(), 10, id="lighthouse"),
        pytest.param(stores.sqlite(), 10, id="sqlite"),
        pytest.param(stores.lighthouse(segment_bytes=4096), 3, id="lighthouse-smoke", marks=pytest.mark.smoke),
    ],
)
def test_posix_crash_state_loses_no_acknowledged_event(
    adapter: AdapterSpec, default_crashes: int, tmp_path: Path, testkit_rng: random.Random, testkit_record,
    testkit_seed: int, case_seed: int, scaled, require,
) -> None:
    """Stricter than ext4: only what was fsynced survives, a new file's name only after its directory's fsync."""
    require("strace", probe_strace())
    testkit_record.sut = adapter.name
    crashes = scaled(default_crashes)
    result = run_posix_crashes(adapter, crashes, tmp_path, testkit_rng, case_seed)
    result.tally.record(testkit_record)
    result.timeline.record(testkit_record)
    testkit_record.fault("posix_crash", result.tally.proven > 0,
                         f"{result.tally.proven}/{result.tally.cases} crash states dropped unsynced data")
    assert result.tally.proven > 0, (
        f"seed {testkit_seed}: no crash state was proven (nothing unsynced to drop, or the trace was incomplete):\n"
        + "\n".join(result.failures[:3]))
    assert not result.failures, (
        f"seed {testkit_seed}: {len(result.failures)} failing checks:\n" + "\n".join(result.failures[:5]))
