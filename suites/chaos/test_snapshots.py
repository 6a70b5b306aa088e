"""Snapshots under crashes: SIGKILLs, power cuts and the POSIX crash model hit a worker that saves snapshots.

Campaign: :func:`testkit.chaos.run_snapshot_campaign` (the loaded snapshot is the last acknowledged
save or a later one cut short, never torn or mixed; snapshot + later events equal a full replay; under
the POSIX model every save is write, fsync, rename, directory fsync). Broken snapshot writers (in
place without fsync; rename without the directory fsync) must be caught.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from testkit.chaos import expect_caught, run_snapshot_campaign, settle

from . import seeded_bugs, stores


@pytest.mark.parametrize(("fault", "crashes"), [
    pytest.param("sigkill", 12, id="sigkill", marks=pytest.mark.smoke),
    pytest.param("power_cut", 10, id="power_cut"),
    pytest.param("posix_crash", 10, id="posix_crash"),
])
def test_snapshots_survive_crashes(fault: str, crashes: int, tmp_path: Path, testkit_rng: random.Random,
                                   testkit_record, testkit_seed: int, case_seed: int, scaled, require_fault) -> None:
    require_fault(fault)
    system = stores.lighthouse(segment_bytes=64 * 1024)
    testkit_record.sut = system.name
    result = run_snapshot_campaign(system.spec, fault, scaled(crashes), tmp_path, testkit_rng,  # type: ignore[arg-type]
                                   case_seed)
    settle(result, testkit_record, fault=f"snapshot_{fault}", expected_unsafe=False, seed=testkit_seed,
           min_proven=0.0)


@pytest.mark.parametrize("store_class", [
    pytest.param(seeded_bugs.SnapshotInPlace, id="in-place"),
    pytest.param(seeded_bugs.SnapshotSkipDirectoryFsync, id="skip-directory-fsync"),
])
def test_broken_snapshot_writers_are_caught(store_class: type, tmp_path: Path, testkit_rng: random.Random,
                                            testkit_record, testkit_seed: int, case_seed: int, scaled,
                                            require_fault) -> None:
    require_fault("posix_crash")
    system = stores.variant(store_class, segment_bytes=64 * 1024)
    testkit_record.sut = system.name
    result = run_snapshot_campaign(system.spec, "posix_crash", scaled(6), tmp_path, testkit_rng, case_seed,
                                   until_caught=True)
    expect_caught(result, testkit_record, fault="snapshot_posix_crash", label=store_class.__name__,
                  seed=testkit_seed)
