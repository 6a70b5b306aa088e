"""settle(): a safe configuration must be clean, a known-unsafe one must be caught; both recorded in the results."""

from __future__ import annotations

import pytest

from testkit.chaos import CampaignResult, ChaosFailure, Tally, expect_caught, settle
from testkit.plugin import TestkitSession, TestRecorder


class _Config:
    def getoption(self, name: str) -> None:
        return None


def _recorder() -> TestRecorder:
    return TestRecorder("x::t", 1, TestkitSession(_Config()))  # type: ignore[arg-type]


def _result(*, proven: int, caught: list[bool], failures: list[str] = ()) -> CampaignResult:
    result = CampaignResult(Tally("power_cut", "store"))
    for index in range(len(caught)):
        result.tally.case(index < proven)
    result.caught = list(caught)
    result.failures = list(failures)
    if any(caught):
        result.lost_ids = {"e1"}
        result.tally.violated("no_lost_ack")
    return result


def test_expected_unsafe_and_caught_passes_and_is_recorded() -> None:
    recorder = _recorder()
    settle(_result(proven=4, caught=[False, True, False, True], failures=["lost"]), recorder, fault="power_cut",
           expected_unsafe=True, seed=1)
    assert recorder.expectations == [{"fault": "power_cut", "expected_unsafe": True, "caught": True, "attempts": 4,
                                      "catches": 2, "catch_rate": 0.5, "lost_acknowledged": 1}]
    assert recorder.metrics["sensitivity.store.catch_rate"]["value"] == 0.5
    assert {fault for fault, _ in recorder.session.chaos_cells} == {"known-bad:power_cut"}


def test_expected_unsafe_but_not_caught_fails() -> None:
    with pytest.raises(ChaosFailure, match="expected to lose acknowledged writes under power_cut"):
        settle(_result(proven=3, caught=[False] * 3), _recorder(), fault="power_cut", expected_unsafe=True, seed=1)


def test_safe_configuration_fails_on_any_failing_check_and_passes_clean() -> None:
    settle(_result(proven=2, caught=[False, False]), _recorder(), fault="power_cut", expected_unsafe=False, seed=1)
    with pytest.raises(ChaosFailure, match="1 failing checks"):
        settle(_result(proven=2, caught=[True, False], failures=["case 0: lost"]), _recorder(), fault="power_cut",
               expected_unsafe=False, seed=1)


def test_a_fault_that_was_not_proven_fails_whatever_the_expectation() -> None:
    for expected_unsafe in (False, True):
        with pytest.raises(ChaosFailure, match="faults proven"):
            settle(_result(proven=1, caught=[True, True]), _recorder(), fault="power_cut",
                   expected_unsafe=expected_unsafe, seed=1)


def test_an_unmet_need_fails_a_clean_run_with_its_reason() -> None:
    result = _result(proven=2, caught=[False, False])
    result.need(True, "a retry")
    result.need(False, "no crash left a torn tail")
    with pytest.raises(ChaosFailure, match="proved nothing: no crash left a torn tail"):
        settle(result, _recorder(), fault="power_cut", expected_unsafe=False, seed=1)


def test_expect_caught_passes_on_any_failing_check_and_fails_when_none() -> None:
    recorder = _recorder()
    caught = _result(proven=1, caught=[False], failures=["torn snapshot"])
    caught.tally.violated("recovers")
    expect_caught(caught, recorder, fault="snapshot", label="in-place", seed=1)
    assert recorder.expectations[0]["caught"] is True and recorder.expectations[0]["expected_unsafe"] is True
    assert {fault for fault, _ in recorder.session.chaos_cells} == {"known-bad:in-place"}
    with pytest.raises(ChaosFailure, match="in-place passed 2 snapshot cases unnoticed"):
        expect_caught(_result(proven=2, caught=[False, False]), _recorder(), fault="snapshot", label="in-place",
                      seed=1)


def test_a_fault_that_cannot_be_injected_skips_with_the_reason_unless_a_check_failed() -> None:
    reason = "sqlite made 0 fdatasync calls: the fault cannot be injected into this configuration"
    unproven = _result(proven=0, caught=[False])
    unproven.not_applicable = reason
    with pytest.raises(pytest.skip.Exception, match="0 fdatasync calls"):
        settle(unproven, _recorder(), fault="io_error", expected_unsafe=False, seed=1)
    failing = _result(proven=0, caught=[True], failures=["writes did not resume"])
    failing.not_applicable = reason
    with pytest.raises(ChaosFailure, match="0/1 io_error faults proven"):
        settle(failing, _recorder(), fault="io_error", expected_unsafe=False, seed=1)
