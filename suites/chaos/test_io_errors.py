"""Targeted I/O errors: an LD_PRELOAD shim fails write/fsync/fdatasync of the store's own files (EIO, ENOSPC)
or makes writes short, in a child running agent traffic. Campaign: :func:`testkit.chaos.run_io_errors`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from testkit.chaos import SystemUnderTest, run_io_errors, settle
from testkit.chaos.io_errors import IO_SCENARIOS, LIGHTHOUSE_ONLY
from testkit.faults.probe import probe_gcc

from . import stores

SYSTEMS = {
    # 16 KiB segments: several rotations (new file, header write, directory fsync) inside the faulty phase.
    "lighthouse": stores.lighthouse(probe_interval=0.05, segment_bytes=16 * 1024),
    "sqlite": stores.sqlite(),
}


@pytest.mark.parametrize(("system", "scenario"), [
    pytest.param(SYSTEMS[sut], scenario, id=f"{sut}-{scenario}",
                 marks=[pytest.mark.smoke] if scenario == "fdatasync_eio_once" else [])
    for scenario in IO_SCENARIOS for sut in SYSTEMS if sut == "lighthouse" or scenario not in LIGHTHOUSE_ONLY
])
def test_io_errors_on_the_stores_files(system: SystemUnderTest, scenario: str, tmp_path: Path, testkit_record,
                                       testkit_seed: int, case_seed: int, require) -> None:
    require("LD_PRELOAD shim (gcc)", probe_gcc())
    testkit_record.sut = system.name
    result = run_io_errors(system.spec, scenario, tmp_path, case_seed, target=system.capabilities.io_target)
    settle(result, testkit_record, fault="io_error", expected_unsafe=False, seed=testkit_seed)
