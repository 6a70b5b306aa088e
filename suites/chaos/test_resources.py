"""Resource exhaustion in a child: no file descriptor to spare, little memory, files capped in size.
Campaign: :func:`testkit.chaos.run_resource_pressure`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from testkit.chaos import SystemUnderTest, run_resource_pressure, settle
from testkit.chaos.resources import PRESSURE

from . import stores

MIB = 1024 * 1024


def _system(limit: str, name: str) -> SystemUnderTest:
    if name == "sqlite":
        return stores.sqlite()
    # Small segments make rotations (new descriptors) frequent; file-size limits need one big segment.
    return stores.lighthouse(probe_interval=0.05, segment_bytes=4096 if limit != "rlimit_fsize" else 64 * MIB)


CASES = [
    pytest.param(limit, _system(limit, name), id=f"{name}-{limit}",
                 marks=[pytest.mark.smoke] if limit == "rlimit_fsize" else [])
    for limit in PRESSURE for name in ("lighthouse", "sqlite")
]


@pytest.mark.parametrize(("limit", "system"), CASES)
def test_resource_exhaustion_in_a_child(system: SystemUnderTest, limit: str, tmp_path: Path, testkit_record,
                                        testkit_seed: int, case_seed: int) -> None:
    testkit_record.sut = system.name
    settle(run_resource_pressure(system.spec, limit, tmp_path, case_seed), testkit_record, fault="rlimit",
           expected_unsafe=False, seed=testkit_seed)
