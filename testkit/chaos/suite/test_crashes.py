"""Crashes: SIGKILL cycles (also inside recovery), named crash points, power cuts on loop ext4, the POSIX crash model."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from testkit.chaos import (
    SystemUnderTest,
    run_crash_point_kills,
    run_kill_cycles,
    run_posix_crashes,
    run_power_cuts,
    settle,
)
from testkit.faults.probe import probe_shutdown_ioctl, probe_strace


def _file_based(system: SystemUnderTest) -> None:
    if not system.capabilities.file_based:
        pytest.skip(f"{system.name} keeps no state in its data directory (capability file_based=False)")


def test_sigkill_cycles(system_under_test: SystemUnderTest, tmp_path: Path, testkit_rng: random.Random,
                        testkit_record, testkit_seed: int, case_seed: int, scaled) -> None:
    """SIGKILL a writing worker at random moments, 10% of them inside recovery; nothing acknowledged may go."""
    system = system_under_test
    result = run_kill_cycles(system.spec, scaled(30), tmp_path, testkit_rng, case_seed)
    settle(result, testkit_record, fault="sigkill", expected_unsafe=system.expects_loss("sigkill"),
           seed=testkit_seed, min_proven=0.9)


def test_named_crash_points(system_under_test: SystemUnderTest, tmp_path: Path, testkit_rng: random.Random,
                            testkit_record, testkit_seed: int, case_seed: int, scaled) -> None:
    """Whitebox kills at every crash point the adapter offers (between write, fsync and ack...)."""
    system = system_under_test
    spec = system.crash_point_spec()
    if spec is None:
        pytest.skip(f"{system.name} offers no named crash points (capabilities crash_points/crash_point_factory)")
    failures: list[str] = []
    for point in system.capabilities.crash_points:
        result = run_crash_point_kills(spec, point, scaled(3), tmp_path / point, testkit_rng, case_seed)
        try:
            settle(result, testkit_record, fault="crash_point", expected_unsafe=system.expects_loss("crash_point"),
                   seed=testkit_seed, min_proven=0.0)
        except AssertionError as exc:
            failures.append(f"{point}: {exc}")
    assert not failures, "\n".join(failures)


def test_power_cuts(system_under_test: SystemUnderTest, tmp_path: Path, testkit_rng: random.Random, testkit_record,
                    testkit_seed: int, case_seed: int, scaled, require) -> None:
    """Cut power to a loop-mounted ext4 mid-write (FS_IOC_SHUTDOWN, no journal flush): only fsynced data survives."""
    system = system_under_test
    _file_based(system)
    require("power cut (loop ext4 + FS_IOC_SHUTDOWN)", probe_shutdown_ioctl())
    result = run_power_cuts(system.spec, scaled(10), tmp_path, testkit_rng, case_seed)
    settle(result, testkit_record, fault="power_cut", expected_unsafe=system.expects_loss("power_cut"),
           seed=testkit_seed)


def test_posix_crash_model(system_under_test: SystemUnderTest, tmp_path: Path, testkit_rng: random.Random,
                           testkit_record, testkit_seed: int, case_seed: int, scaled, require) -> None:
    """Stricter than ext4: a crash state keeps only what POSIX promises (a new name needs its directory's fsync)."""
    system = system_under_test
    _file_based(system)
    require("strace", probe_strace())
    unsafe = system.expects_loss("posix_crash")
    if unsafe and system.capabilities.unsynced_overwrites and not system.expects_loss("sigkill"):
        pytest.skip(f"{system.name} loses unsynced overwrites inside its files (recycled WAL files, pages rewritten "
                    "in place), which the POSIX crash model keeps (capability unsynced_overwrites); its expected "
                    "loss is judged by the power cut")
    result = run_posix_crashes(system.spec, scaled(5), tmp_path, testkit_rng, case_seed, min_catches=int(unsafe))
    settle(result, testkit_record, fault="posix_crash", expected_unsafe=unsafe,
           seed=testkit_seed, min_proven=0.0)
