"""Snapshots under crashes: SIGKILLs, power cuts and the POSIX crash model hit a worker that saves snapshots.

After every crash the loaded snapshot must be the last acknowledged save (or a later one cut short),
never torn or mixed, and snapshot + the events after it must equal a full replay; under the POSIX
model the trace must show write, fsync, rename, directory fsync in that order for every save.
Broken snapshot writers (in place without fsync; rename without the directory fsync) must be caught.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from testkit.adapters import AdapterSpec
from testkit.faults.probe import probe_shutdown_ioctl, probe_strace
from testkit.faults.snapshot_campaign import SnapshotCampaignResult, run_snapshot_crashes
from testkit.chaos.judging import Tally

from . import seeded_bugs, stores

PROBES = {"power_cut": ("power cut (loop ext4 + FS_IOC_SHUTDOWN)", probe_shutdown_ioctl),
          "posix_crash": ("strace", probe_strace)}
HISTORY_INVARIANTS = ("no_lost_ack", "no_duplicate", "order", "no_phantom", "prefix_no_holes", "recovers")


def _run(adapter: AdapterSpec, fault: str, crashes: int, root: Path, rng: random.Random, seed: int, require,
         **options: object) -> SnapshotCampaignResult:
    if fault in PROBES:
        mechanism, probe = PROBES[fault]
        require(mechanism, probe())
    return run_snapshot_crashes(adapter, fault, crashes, root, rng, seed, **options)  # type: ignore[arg-type]


def _record(testkit_record, result: SnapshotCampaignResult, fault_kind: str, sut: str) -> None:
    tally = Tally(fault_kind[:24], sut)
    tally.cases, tally.proven = result.cases, result.proven
    for invariant in HISTORY_INVARIANTS:
        tally.violated(invariant, len(result.failures) + len(result.order_problems) if invariant == "recovers" else 0)
    tally.record(testkit_record)
    testkit_record.fault(fault_kind, result.proven > 0, f"{result.proven}/{result.cases} crashes proven, "
                         f"{result.acked_saves} acknowledged saves, {result.snapshots_checked} snapshots checked")


@pytest.mark.parametrize(("fault", "crashes"), [
    pytest.param("sigkill", 12, id="sigkill", marks=pytest.mark.smoke),
    pytest.param("power_cut", 10, id="power_cut"),
    pytest.param("posix_crash", 10, id="posix_crash"),
])
def test_snapshots_survive_crashes(fault: str, crashes: int, tmp_path: Path, testkit_rng: random.Random,
                                   testkit_record, testkit_seed: int, case_seed: int, scaled, require) -> None:
    adapter = stores.lighthouse(segment_bytes=64 * 1024).spec
    testkit_record.sut = adapter.name
    result = _run(adapter, fault, scaled(crashes), tmp_path, testkit_rng, case_seed, require)
    _record(testkit_record, result, f"snapshot_{fault}", adapter.name)
    assert result.proven >= 1, f"seed {testkit_seed}: no {fault} was proven"
    assert result.acked_saves >= 1 and result.snapshots_checked >= 1, (
        f"seed {testkit_seed}: nothing to judge: {result.acked_saves} saves acknowledged, "
        f"{result.snapshots_checked} snapshots loaded")
    problems = result.failures + result.order_problems
    assert not problems, f"seed {testkit_seed}: {len(problems)} problems:\n" + "\n".join(problems[:8])


@pytest.mark.parametrize("store_class", [
    pytest.param(seeded_bugs.SnapshotInPlace, id="in-place"),
    pytest.param(seeded_bugs.SnapshotSkipDirectoryFsync, id="skip-directory-fsync"),
])
def test_broken_snapshot_writers_are_caught(store_class: type, tmp_path: Path, testkit_rng: random.Random,
                                            testkit_record, testkit_seed: int, case_seed: int, scaled,
                                            require) -> None:
    adapter = stores.variant(store_class, segment_bytes=64 * 1024).spec
    testkit_record.sut = adapter.name
    result = _run(adapter, "posix_crash", scaled(6), tmp_path, testkit_rng, case_seed, require, until_caught=True,
                  preload=[seeded_bugs.__name__])
    _record(testkit_record, result, f"known-bad:{store_class.__name__}", adapter.name)
    assert result.failures or result.order_problems, (
        f"seed {testkit_seed}: {store_class.__name__} passed {result.cases} POSIX crashes unnoticed")
    print(f"{store_class.__name__}: {(result.order_problems + result.failures)[:2]}")
