"""Power cuts against real third-party stores: each store's documented contract is the expectation.

PostgreSQL with its defaults must lose nothing acknowledged; with ``fsync=off`` its loss must be
caught (if a cut never lost anything the suite could not tell the two apart). Both first prove the
cuts happened. This module is the only glue between the shipped adapters and the campaign code: it
calls the same ``run_power_cuts`` every other power-cut test calls.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from testkit.adapters import AdapterSpec
from testkit.adapters.shipped import SHIPPED
from testkit.faults.probe import probe_shutdown_ioctl

from .campaigns import run_power_cuts

pytestmark = pytest.mark.needs_root

#: A fresh worker of a third-party store needs tens of milliseconds (a server start, a first transaction)
#: before its first acknowledgement: cut later than for lighthouse so that writes are really in flight.
CUT_DELAY_S = (0.05, 0.4)


def shipped_spec(name: str) -> AdapterSpec:
    """The shipped configuration as a spec a worker process can rebuild; skips when its package is missing."""
    shipped = SHIPPED[name]
    missing = shipped.missing()
    if missing:
        pytest.skip(f"{name}: {missing}")
    return AdapterSpec(name, shipped.factory)


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
    adapter = shipped_spec(name)
    testkit_record.sut = name
    cuts = scaled(default_cuts)
    result = run_power_cuts(adapter, cuts, tmp_path, testkit_rng, case_seed, size_mb=128, cut_delay_s=CUT_DELAY_S)
    result.tally.record(testkit_record)
    assert result.tally.proven == cuts, f"seed {testkit_seed}: only {result.tally.proven}/{cuts} power cuts proven"
    assert not result.failures, (
        f"seed {testkit_seed}: {name} broke its durability contract:\n" + "\n".join(result.failures[:5]))
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
    adapter = shipped_spec(name)
    assert "power_cut" in SHIPPED[name].load()(tmp_path / "probe").expected_loss
    testkit_record.sut = name
    result = run_power_cuts(adapter, scaled(max_cuts), tmp_path, testkit_rng, case_seed, size_mb=128,
                            until_caught=True, cut_delay_s=CUT_DELAY_S)
    result.tally.record(testkit_record)
    assert result.tally.proven == result.tally.cases, (
        f"seed {testkit_seed}: only {result.tally.proven}/{result.tally.cases} power cuts proven")
    assert result.catches, (f"seed {testkit_seed}: {name} is documented to lose acknowledged writes on power loss, "
                            f"yet {result.tally.cases} cuts lost none: the campaign cannot tell it from a safe store")
    assert result.lost_ids, f"seed {testkit_seed}: the catch must be a lost acknowledged write: {result.failures[:3]}"
