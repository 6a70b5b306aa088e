"""A sync fault against a configuration that barely syncs: not applicable, with the shim's call counts as the reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from testkit.adapters import AdapterSpec
from testkit.chaos.io_errors import IO_SCENARIOS, run_io_errors
from testkit.faults.probe import probe_gcc

pytestmark = pytest.mark.ci

SQLITE_OFF = AdapterSpec("sqlite-off", "testkit.adapters.sqlite:sqlite_off")
SQLITE_FULL = AdapterSpec("sqlite-full", "testkit.adapters.sqlite:sqlite_full")


@pytest.fixture(autouse=True)
def _needs_gcc() -> None:
    available = probe_gcc()
    if not available:
        pytest.skip(f"LD_PRELOAD shim (gcc) unavailable: {available.reason}")


def test_sqlite_off_never_reaches_the_failing_sync_and_says_how_many_it_made(tmp_path: Path) -> None:
    result = run_io_errors(SQLITE_OFF, "fdatasync_eio_once", tmp_path, 5, target="events.db")
    assert result.tally.proven == 0 and not result.failures, result.failures
    assert result.not_applicable is not None, result.faults
    after = IO_SCENARIOS["fdatasync_eio_once"]["after_calls"]
    assert f"lets the first {after} calls of each through" in result.not_applicable
    assert "fdatasync calls on *events.db*" in result.not_applicable


def test_a_configuration_that_syncs_meets_the_fault_and_is_judged(tmp_path: Path) -> None:
    result = run_io_errors(SQLITE_FULL, "fdatasync_eio_once", tmp_path, 5, target="events.db")
    assert result.tally.proven == 1 and result.not_applicable is None
    assert not result.failures, result.failures
