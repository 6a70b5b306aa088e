"""I/O scenarios: a sync fault against a configuration that barely syncs is not applicable (the shim's call counts say
why); a store that refuses short writes is told apart from one that broke another rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from testkit.adapters import AdapterSpec
from testkit.chaos.io_errors import IO_SCENARIOS, RESUME_ACKS, only_writes_never_resumed, run_io_errors
from testkit.chaos.judging import Tally
from testkit.chaos.result import CampaignResult
from testkit.faults.probe import probe_gcc

pytestmark = pytest.mark.ci

SQLITE_OFF = AdapterSpec("sqlite-off", "testkit.adapters.sqlite:sqlite_off")
SQLITE_FULL = AdapterSpec("sqlite-full", "testkit.adapters.sqlite:sqlite_full")


def _needs_gcc() -> None:
    available = probe_gcc()
    if not available:
        pytest.skip(f"LD_PRELOAD shim (gcc) unavailable: {available.reason}")


def test_sqlite_off_never_reaches_the_failing_sync_and_says_how_many_it_made(tmp_path: Path) -> None:
    _needs_gcc()
    result = run_io_errors(SQLITE_OFF, "fdatasync_eio_once", tmp_path, 5, target="events.db")
    assert result.tally.proven == 0 and not result.failures, result.failures
    assert result.not_applicable is not None, result.faults
    after = IO_SCENARIOS["fdatasync_eio_once"]["after_calls"]
    assert f"lets the first {after} calls of each through" in result.not_applicable
    assert "fdatasync calls on *events.db*" in result.not_applicable


def test_a_configuration_that_syncs_meets_the_fault_and_is_judged(tmp_path: Path) -> None:
    _needs_gcc()
    result = run_io_errors(SQLITE_FULL, "fdatasync_eio_once", tmp_path, 5, target="events.db")
    assert result.tally.proven == 1 and result.not_applicable is None
    assert not result.failures, result.failures


def _short_writes_result(acked_after: int, *failures: tuple[str, str]) -> CampaignResult:
    result = CampaignResult(Tally("io_short_writes", "store"), parameters={"acked_after": acked_after})
    for message, invariant in failures:
        result.problem(message, invariant)
    return result


def test_only_a_store_that_merely_never_resumed_is_told_apart() -> None:
    no_resume = ("writes did not resume after the injections stopped", "recovers")
    assert only_writes_never_resumed(_short_writes_result(0, no_resume))
    assert not only_writes_never_resumed(_short_writes_result(RESUME_ACKS))  # clean run: nothing to excuse
    assert not only_writes_never_resumed(_short_writes_result(0, no_resume, ("1 acknowledged lost", "no_lost_ack")))
    assert not only_writes_never_resumed(_short_writes_result(0, no_resume, ("untyped OSError", "typed_errors")))
