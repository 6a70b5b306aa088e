"""Power cuts against real third-party stores: each store's documented contract is the expectation.

PostgreSQL with its defaults must lose nothing acknowledged; with ``fsync=off`` its loss must be
caught (if a cut never lost anything the suite could not tell the two apart). Both first prove the
cuts happened. Only parametrisation here: the campaign is the same :func:`testkit.chaos.run_power_cuts`
every other power-cut test calls, judged by :func:`testkit.chaos.settle` against each contract.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from testkit.adapters.shipped import SHIPPED
from testkit.chaos import SystemUnderTest, run_power_cuts, settle
from testkit.chaos.registry import system_from_arguments
from testkit.faults.probe import probe_shutdown_ioctl

pytestmark = pytest.mark.needs_root

#: A fresh worker of a third-party store needs tens of milliseconds (a server start, a first transaction)
#: before its first acknowledgement: cut later than for lighthouse so that writes are really in flight.
CUT_DELAY_S = (0.05, 0.4)


def shipped_system(name: str) -> SystemUnderTest:
    """The shipped configuration with its declared contract; skips when its package is missing."""
    missing = SHIPPED[name].missing()
    if missing:
        pytest.skip(f"{name}: {missing}")
    return system_from_arguments(name)


@pytest.mark.parametrize(
    ("name", "default_cuts"),
    [pytest.param("postgres", 3, marks=pytest.mark.smoke, id="postgres"),
     pytest.param("lmdb", 6, id="lmdb"),
     pytest.param("eventsourcing-sqlite", 6, id="eventsourcing-sqlite")],
)
def test_durable_default_loses_nothing_under_power_cuts(
    name: str, default_cuts: int, tmp_path: Path, testkit_rng: random.Random, testkit_record, testkit_seed: int,
    case_seed: int, scaled, require,
) -> None:
    require("power cut (loop ext4 + FS_IOC_SHUTDOWN)", probe_shutdown_ioctl())
    system = shipped_system(name)
    assert not system.expects_loss("power_cut"), f"{name}'s contract promises durability under power loss"
    testkit_record.sut = name
    cuts = scaled(default_cuts)
    result = run_power_cuts(system.spec, cuts, tmp_path, testkit_rng, case_seed, size_mb=128,
                            cut_delay_s=CUT_DELAY_S)
    settle(result, testkit_record, fault="power_cut", expected_unsafe=False, seed=testkit_seed)
    assert result.last is not None and result.last.verdict.counts.get("acknowledged", 0) > 0, (
        f"seed {testkit_seed}: no write was acknowledged before the cuts: nothing was at stake")


@pytest.mark.parametrize(
    ("name", "max_cuts"),
    [pytest.param("postgres-fsync-off", 6, marks=pytest.mark.smoke, id="postgres-fsync-off"),
     pytest.param("postgres-sync-off", 10, id="postgres-sync-off"),
     pytest.param("lmdb-nosync", 10, id="lmdb-nosync"),
     pytest.param("sqlite-off", 10, id="sqlite-off")],
)
def test_expected_unsafe_configuration_is_caught_losing_acknowledged_writes(
    name: str, max_cuts: int, tmp_path: Path, testkit_rng: random.Random, testkit_record, testkit_seed: int,
    case_seed: int, scaled, require,
) -> None:
    require("power cut (loop ext4 + FS_IOC_SHUTDOWN)", probe_shutdown_ioctl())
    system = shipped_system(name)
    assert system.expects_loss("power_cut"), f"{name}'s contract must declare power-cut loss"
    testkit_record.sut = name
    result = run_power_cuts(system.spec, scaled(max_cuts), tmp_path, testkit_rng, case_seed, size_mb=128,
                            until_caught=True, cut_delay_s=CUT_DELAY_S)
    # settle: every cut proven, a loss caught, and the verdict names the lost acknowledged events
    settle(result, testkit_record, fault="power_cut", expected_unsafe=True, seed=testkit_seed)
