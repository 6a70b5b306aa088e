"""SIGKILL crash-recover cycles: a store killed at random moments (and at named points) loses nothing it acknowledged.

Campaigns: :func:`testkit.chaos.run_kill_cycles` and :func:`testkit.chaos.run_crash_point_kills`.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from testkit.adapters.lighthouse import CRASH_POINTS
from testkit.chaos import SystemUnderTest, run_crash_point_kills, run_kill_cycles, settle

from . import stores


@pytest.mark.parametrize(
    ("system", "default_cycles"),
    [
        pytest.param(stores.lighthouse(segment_bytes=256 * 1024), 200, id="lighthouse"),
        pytest.param(stores.sqlite(), 60, id="sqlite"),
        pytest.param(stores.lighthouse(segment_bytes=64 * 1024), 8, id="lighthouse-smoke", marks=pytest.mark.smoke),
        pytest.param(stores.sqlite(), 5, id="sqlite-smoke", marks=pytest.mark.smoke),
    ],
)
def test_sigkill_cycles_lose_no_acknowledged_event(
    system: SystemUnderTest, default_cycles: int, tmp_path: Path, testkit_rng: random.Random,
    testkit_record, testkit_seed: int, case_seed: int, scaled,
) -> None:
    testkit_record.sut = system.name
    cycles = scaled(default_cycles)
    started = time.monotonic()
    result = run_kill_cycles(system.spec, cycles, tmp_path, testkit_rng, case_seed)
    testkit_record.fault("sigkill", result.tally.proven == result.tally.cases,
                         f"{result.tally.proven}/{result.tally.cases} kills proven")
    testkit_record.metric("chaos.sigkill.cycle_seconds", (time.monotonic() - started) / cycles, "s")
    settle(result, testkit_record, fault="sigkill", expected_unsafe=system.expects_loss("sigkill"),
           seed=testkit_seed, min_proven=0.9)


@pytest.mark.parametrize("crash_point", [
    pytest.param(point, marks=[pytest.mark.smoke] if point == "before_sync" else []) for point in CRASH_POINTS
])
def test_kill_at_named_write_path_points(
    crash_point: str, tmp_path: Path, testkit_rng: random.Random, testkit_record, testkit_seed: int,
    case_seed: int, scaled,
) -> None:
    """Whitebox kills: between write and fsync, fsync and ack, file creation and directory fsync..."""
    system = stores.lighthouse(segment_bytes=4096)  # tiny segments: frequent rotations
    spec = system.crash_point_spec()
    assert spec is not None
    testkit_record.sut = spec.name
    result = run_crash_point_kills(spec, crash_point, scaled(6), tmp_path, testkit_rng, case_seed)
    testkit_record.fault(f"sigkill@{crash_point}", result.tally.proven > 0,
                         f"{result.tally.proven}/{result.tally.cases} workers died there")
    settle(result, testkit_record, fault="crash_point", expected_unsafe=False, seed=testkit_seed, min_proven=0.0)
