"""Jepsen-style clients across restarts, appends right after recovery, and the store's own events judged too.

Campaigns: :func:`testkit.chaos.run_restarts` (crash-restart cycles where each incarnation reads
acknowledged events back by id, re-sends earlier writes with the same ids and appends; only some
crashes are judged at once, so other incarnations are the first to open and repair the store) and
:func:`testkit.chaos.run_store_event_reopens` (the store's own ``corruption_detected`` events held to
no-duplicates across reopens).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from testkit.chaos import expect_caught, run_restarts, run_store_event_reopens, settle
from testkit.chaos.lighthouse_log import flip_bit_mid_log, tear_last_segment

from . import seeded_bugs, stores


@pytest.mark.parametrize(("fault", "crashes"), [
    pytest.param("sigkill", 12, id="sigkill", marks=pytest.mark.smoke),
    pytest.param("posix_crash", 12, id="posix_crash"),
])
def test_retries_across_restarts_and_appends_after_recovery(
    fault: str, crashes: int, tmp_path: Path, testkit_rng: random.Random, testkit_record, testkit_seed: int,
    case_seed: int, scaled, require_fault,
) -> None:
    require_fault(fault)
    system = stores.lighthouse(segment_bytes=64 * 1024)
    testkit_record.sut = system.name
    result = run_restarts(system.spec, fault, scaled(crashes), tmp_path, testkit_rng, case_seed,  # type: ignore[arg-type]
                          judge_adapter=stores.with_store_events(system).spec, tear=tear_last_segment)
    settle(result, testkit_record, fault=f"restart_{fault}", expected_unsafe=False, seed=testkit_seed, min_proven=0.0)


@pytest.mark.parametrize(("store_class", "fault"), [
    pytest.param(seeded_bugs.AcceptRetryAsNewEvent, "sigkill", id="retry-stored-twice"),
    pytest.param(seeded_bugs.StaleOffsetAfterRecovery, "posix_crash", id="stale-offset-after-recovery"),
])
def test_restart_bugs_are_caught(store_class: type, fault: str, tmp_path: Path, testkit_rng: random.Random,
                                 testkit_record, testkit_seed: int, case_seed: int, scaled, require_fault) -> None:
    require_fault(fault)
    system = stores.variant(store_class, segment_bytes=64 * 1024)
    testkit_record.sut = system.name
    result = run_restarts(system.spec, fault, scaled(16), tmp_path, testkit_rng, case_seed,  # type: ignore[arg-type]
                          judge_adapter=stores.with_store_events(system).spec, tear=tear_last_segment,
                          until_caught=True)
    expect_caught(result, testkit_record, fault=f"restart_{fault}", label=store_class.__name__, seed=testkit_seed)


@pytest.mark.parametrize("store_class", [
    pytest.param(None, id="lighthouse"),
    pytest.param(seeded_bugs.DuplicateIntegrityEvents, id="known-bad-duplicate-integrity-events"),
])
def test_the_stores_own_events_are_held_to_no_duplicates(
    store_class: type | None, tmp_path: Path, testkit_record, testkit_seed: int, case_seed: int,
) -> None:
    """A flipped bit mid-log, then three reopens: the store records the damage once, never once per open."""
    system = stores.lighthouse() if store_class is None else stores.variant(store_class)
    testkit_record.sut = system.name
    result = run_store_event_reopens(system.spec, tmp_path, case_seed, damage=flip_bit_mid_log,
                                     judge_adapter=stores.with_store_events(system).spec)
    if store_class is None:
        settle(result, testkit_record, fault="store_events", expected_unsafe=False, seed=testkit_seed)
    else:
        expect_caught(result, testkit_record, fault="store_events", label="dup-store-events", seed=testkit_seed)
