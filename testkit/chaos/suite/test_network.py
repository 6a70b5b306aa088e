"""Network faults through the kit's TCP proxy, for adapters that offer a networked target."""

from __future__ import annotations

from pathlib import Path

import pytest

from testkit.chaos import SystemUnderTest, run_network_fault, settle
from testkit.chaos.network import NETWORK_FAULTS
from testkit.chaos.sut import load_factory
from testkit.checkers import History


@pytest.mark.parametrize("kind", list(NETWORK_FAULTS))
def test_network_faults(system_under_test: SystemUnderTest, kind: str, tmp_path: Path, testkit_record,
                        testkit_seed: int, case_seed: int, scaled) -> None:
    """Latency, drops, resets, lost responses, partitions: nothing lost, nothing duplicated by retries."""
    system = system_under_test
    reference = system.capabilities.network_target
    if not reference:
        pytest.skip(f"{system.name} is not networked (capability network_target)")
    with load_factory(reference)(system.spec, tmp_path) as target:
        result = run_network_fault(target, kind, scaled(30), case_seed, History(tmp_path / "history.journal"),
                                   sut=system.name)
    settle(result, testkit_record, fault="network", expected_unsafe=system.expects_loss("network"),
           seed=testkit_seed)
