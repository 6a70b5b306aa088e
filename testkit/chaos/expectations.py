"""Jepsen-style expectations: a safe configuration must come out clean, a known-unsafe one must be caught.

A configuration declares the faults under which it is *expected* to lose acknowledged writes
(``Capabilities.expected_loss`` or ``--option expected_loss=power_cut``). For those faults the run
fails if the campaign did *not* catch a loss, and passes when it did; the verdict is recorded in the
results as ``expectations`` (fault, expected_unsafe, caught, attempts, catches, catch_rate) and the
matrix row is named ``known-bad:...`` so that its violations read as the expected outcome.
"""

from __future__ import annotations

from typing import Any

from testkit.chaos.result import CampaignResult, ChaosFailure
from testkit.plugin import KNOWN_BAD_PREFIX  # the matrix rows whose violations are the expected outcome

__all__ = ["KNOWN_BAD_PREFIX", "expect_caught", "settle"]


def settle(result: CampaignResult, recorder: Any, *, fault: str, expected_unsafe: bool, seed: int,
           label: str = "", min_proven: float = 1.0, at_least: int = 1) -> None:
    """Record ``result`` into the test's recorder, then pass or fail it against its expectation.

    A fault test first proves its fault happened: at least ``at_least`` cases and the share
    ``min_proven`` of all cases must have a proven fault. A campaign that found its fault cannot be
    injected into this configuration (``not_applicable``) and no failing check skips with that reason.
    """
    if result.not_applicable and not result.failures:
        import pytest  # a skip is a pytest outcome; settle runs inside a test

        pytest.skip(result.not_applicable)
    if expected_unsafe:  # its own matrix row: violations there are the expected outcome
        result.tally.fault_kind = f"{KNOWN_BAD_PREFIX}{label or fault}"[:24]
    label = label or result.tally.sut
    result.record_into(recorder)
    caught = result.catches >= 1 if expected_unsafe else bool(result.failures)
    entry = {"fault": fault, "expected_unsafe": expected_unsafe, "caught": caught, "attempts": result.attempts,
             "catches": result.catches, "catch_rate": round(result.catch_rate, 4),
             "lost_acknowledged": len(result.lost_ids)}
    expect = getattr(recorder, "expectation", None)
    if callable(expect):
        expect(**entry)
    else:
        recorder.parameters.setdefault("expectations", []).append(entry)
    if expected_unsafe:
        recorder.metric(f"sensitivity.{label}.catch_rate", result.catch_rate, "ratio", direction="higher")
    if result.tally.proven < max(at_least, min_proven * result.tally.cases):
        unproven = [f["detail"] for f in result.faults if not f["proven"] and f["detail"]]
        raise ChaosFailure(f"seed {seed}: only {result.tally.proven}/{result.tally.cases} {fault} faults proven:\n"
                           + "\n".join(result.failures[:3] + unproven[:3]))
    result.require_needs(seed, f"{label} under {fault}")
    if not expected_unsafe:
        result.require_clean(seed, f"{label} under {fault}")
        return
    if not caught:
        raise ChaosFailure(f"seed {seed}: {label} is expected to lose acknowledged writes under {fault}, but "
                           f"{result.attempts} attempts caught nothing: the suite cannot tell it from a safe store")
    if result.last is not None and not result.lost_ids:
        raise ChaosFailure(f"seed {seed}: the verdict does not name the lost events: {result.last.describe()}")
    print(f"{label}: known unsafe under {fault}, caught in {result.catches}/{result.attempts} "
          f"({result.catch_rate:.0%}); {len(result.lost_ids)} acknowledged events lost, "
          f"e.g. {sorted(result.lost_ids)[:3]}")


def expect_caught(result: CampaignResult, recorder: Any, *, fault: str, label: str, seed: int) -> None:
    """A seeded bug (a deliberately broken store) must fail at least one of the campaign's checks.

    Unlike :func:`settle`'s known-unsafe configurations, which must be caught *losing acknowledged
    writes*, a seeded bug is caught by any broken rule (a torn snapshot, a duplicate, a wrong sync
    order). Recorded under a ``known-bad:`` matrix row with its expectation entry.
    """
    result.tally.fault_kind = f"{KNOWN_BAD_PREFIX}{label}"[:24]
    result.record_into(recorder)
    caught = bool(result.failures)
    entry = {"fault": fault, "expected_unsafe": True, "caught": caught, "attempts": result.attempts,
             "catches": int(caught), "failing_checks": len(result.failures)}
    expect = getattr(recorder, "expectation", None)
    if callable(expect):
        expect(**entry)
    else:
        recorder.parameters.setdefault("expectations", []).append(entry)
    result.require_needs(seed, f"{label} under {fault}")
    if not caught:
        raise ChaosFailure(f"seed {seed}: {label} passed {result.tally.cases} {fault} cases unnoticed")
    print(f"{label}: caught under {fault}: {result.failures[0][:300]}")
