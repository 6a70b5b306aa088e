"""Fixtures of a chaos suite: scaled case counts, mechanism probes that skip with the true reason, case seeds.

A suite's ``conftest.py`` imports them (``from testkit.chaos.fixtures import case_seed, require, scaled``).
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from testkit.faults.probe import ProbeResult, probe_shutdown_ioctl, probe_strace

ScaledCount = Callable[[int], int]
Require = Callable[[str, ProbeResult], None]
RequireFault = Callable[[str], None]

__all__ = ["FAULT_MECHANISMS", "Require", "RequireFault", "ScaledCount", "case_seed", "require", "require_fault",
           "scaled"]

#: Faults that need a mechanism this machine may lack: its name in the report, and its probe.
FAULT_MECHANISMS: dict[str, tuple[str, Callable[[], ProbeResult]]] = {
    "power_cut": ("power cut (loop ext4 + FS_IOC_SHUTDOWN)", probe_shutdown_ioctl),
    "posix_crash": ("strace", probe_strace),
    "failed_sync": ("strace", probe_strace),
}


@pytest.fixture
def scaled(testkit_scale: float) -> ScaledCount:
    """``scaled(200)``: the default case count times ``--testkit-duration``'s scale (at least 1)."""

    def count(default: int) -> int:
        return max(1, round(default * testkit_scale))

    return count


@pytest.fixture
def require(testkit_record: object) -> Require:
    """``require("loop ext4", probe_loop_mount())``: skip, reported with the reason, if it is missing."""

    def check(mechanism: str, available: ProbeResult) -> None:
        if not available:
            testkit_record.skip_mechanism(mechanism, available.reason)  # type: ignore[attr-defined]
            pytest.skip(f"{mechanism} unavailable: {available.reason}")

    return check


@pytest.fixture
def case_seed(testkit_rng: random.Random) -> int:
    """A seed for one test's generated traffic, derived from the run seed (printed on failure)."""
    return testkit_rng.getrandbits(62)


@pytest.fixture
def require_fault(require: Require) -> RequireFault:
    """``require_fault("power_cut")``: skip with the reason when the fault's mechanism is missing here."""

    def check(fault: str) -> None:
        if fault in FAULT_MECHANISMS:
            mechanism, probe = FAULT_MECHANISMS[fault]
            require(mechanism, probe())

    return check
