"""Jepsen-style clients across restarts, appends right after recovery, and the store's own events judged too.

Crash-restart cycles where each incarnation reads earlier acknowledged events back by id, re-sends a
share of the previous incarnation's acknowledged and unknown writes with the same ids, and appends;
only some crashes are judged right away, so other incarnations are the first to open (and repair) the
store and append behind the repair before anyone checks. The judge reads the store's own
``corruption_detected`` events too, so a store that repeats them is caught as a duplicate.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from testkit.adapters import AdapterSpec
from testkit.checkers import check_durability
from testkit.faults import append_garbage, flip_bit
from testkit.faults.probe import probe_strace
from testkit.faults.restart_campaign import RestartCampaignResult, run_restart_cycles
from testkit.faults.workload import Phase, WorkloadSpec, load_history, recover, run_incarnation
from testkit.chaos.judging import Tally, is_store_generated

from . import seeded_bugs, stores

INVARIANTS = ("no_lost_ack", "no_duplicate", "order", "no_phantom", "prefix_no_holes", "recovers")


def _with_store_events(adapter: AdapterSpec) -> AdapterSpec:
    return AdapterSpec(adapter.name, adapter.factory, {**adapter.options, "include_store_events": True})


def _record(testkit_record, result: RestartCampaignResult, fault_kind: str, sut: str) -> None:
    tally = Tally(fault_kind[:24], sut)
    tally.cases, tally.proven = result.cases, result.proven
    for invariant in INVARIANTS:
        tally.violated(invariant, len(result.failures) if invariant == "recovers" else 0)
    tally.record(testkit_record)
    testkit_record.fault(fault_kind, result.proven > 0,
                         f"{result.proven}/{result.cases} crashes proven; {result.resent} writes re-sent, "
                         f"{result.read_back} events read back by id, {result.unjudged_reopens} unjudged reopens, "
                         f"{result.torn} torn tails")


def _tear_last_segment(data_dir: Path, rng: random.Random) -> None:
    """A torn write at the end of the newest segment: a few random bytes of a frame that never finished."""
    segments = sorted(data_dir.glob("*.seg"))
    if segments:
        append_garbage(segments[-1], rng.randint(1, 200), rng).require()


def _run(adapter: AdapterSpec, fault: str, crashes: int, root: Path, rng: random.Random, seed: int, require,
         **options: object) -> RestartCampaignResult:
    if fault == "posix_crash":
        require("strace", probe_strace())
    return run_restart_cycles(adapter, fault, crashes, root, rng, seed,  # type: ignore[arg-type]
                              judge_adapter=_with_store_events(adapter), store_generated=is_store_generated,
                              preload=[seeded_bugs.__name__], tear=_tear_last_segment, **options)


@pytest.mark.parametrize(("fault", "crashes"), [
    pytest.param("sigkill", 12, id="sigkill", marks=pytest.mark.smoke),
    pytest.param("posix_crash", 12, id="posix_crash"),
])
def test_retries_across_restarts_and_appends_after_recovery(
    fault: str, crashes: int, tmp_path: Path, testkit_rng: random.Random, testkit_record, testkit_seed: int,
    case_seed: int, scaled, require,
) -> None:
    adapter = stores.lighthouse(segment_bytes=64 * 1024).spec
    testkit_record.sut = adapter.name
    result = _run(adapter, fault, scaled(crashes), tmp_path, testkit_rng, case_seed, require)
    _record(testkit_record, result, f"restart_{fault}", adapter.name)
    assert result.proven >= 1, f"seed {testkit_seed}: no {fault} was proven"
    assert result.torn >= 1 and result.unjudged_reopens >= 1, (
        f"seed {testkit_seed}: no torn tail ({result.torn}) or no reopen before a judge ({result.unjudged_reopens})")
    assert result.resent >= 1 and result.read_back >= 1, (
        f"seed {testkit_seed}: nothing was retried ({result.resent}) or read back ({result.read_back})")
    assert not result.failures, f"seed {testkit_seed}:\n" + "\n".join(result.failures[:8])


@pytest.mark.parametrize(("store_class", "fault"), [
    pytest.param(seeded_bugs.AcceptRetryAsNewEvent, "sigkill", id="retry-stored-twice"),
    pytest.param(seeded_bugs.StaleOffsetAfterRecovery, "posix_crash", id="stale-offset-after-recovery"),
])
def test_restart_bugs_are_caught(store_class: type, fault: str, tmp_path: Path, testkit_rng: random.Random,
                                 testkit_record, testkit_seed: int, case_seed: int, scaled, require) -> None:
    adapter = stores.variant(store_class, segment_bytes=64 * 1024).spec
    testkit_record.sut = adapter.name
    result = _run(adapter, fault, scaled(16), tmp_path, testkit_rng, case_seed, require, until_caught=True)
    _record(testkit_record, result, f"known-bad:{store_class.__name__}", adapter.name)
    assert result.failures, f"seed {testkit_seed}: {store_class.__name__} passed {result.cases} restarts unnoticed"
    print(f"{store_class.__name__}: {result.failures[0][:300]}")


@pytest.mark.parametrize(("store_class", "expect_duplicates"), [
    pytest.param(None, False, id="lighthouse"),
    pytest.param(seeded_bugs.DuplicateIntegrityEvents, True, id="known-bad-duplicate-integrity-events"),
])
def test_the_stores_own_events_are_held_to_no_duplicates(
    store_class: type | None, expect_duplicates: bool, tmp_path: Path, testkit_record, testkit_seed: int,
    case_seed: int,
) -> None:
    """A flipped bit mid-log, then three reopens: the store records the damage once, never once per open."""
    adapter = (stores.lighthouse() if store_class is None else stores.variant(store_class)).spec
    testkit_record.sut = adapter.name
    spec = WorkloadSpec(adapter, str(tmp_path / "data"), str(tmp_path / "journal"), seed=case_seed, clients=2,
                        phases=(Phase(ops_per_client=30),))
    Path(spec.journal_dir).mkdir()
    run_incarnation(spec, 0)
    segment = sorted(Path(spec.data_dir).glob("*.seg"))[0]
    fault = flip_bit(segment, segment.stat().st_size // 2, 3)
    assert fault.proven, fault.detail
    judge_adapter = _with_store_events(adapter)
    recovered = [recover(judge_adapter, spec.data_dir) for _ in range(3)][-1]
    store_events = [e for e in recovered.events if is_store_generated(e)]
    assert store_events, f"seed {testkit_seed}: the store recorded no corruption_detected event for a flipped bit"
    verdict = check_durability(load_history(spec.journal_dir), recovered.events,
                               voided=[*recovered.voided_ranges(), *recovered.lost_ranges()],
                               store_generated=is_store_generated)
    duplicates = verdict.violation_counts.get("duplicate", 0)
    tally = Tally("store_events" if not expect_duplicates else "known-bad:dup-store-events", adapter.name)
    tally.case(fault.proven)
    tally.violated("no_duplicate", duplicates)
    tally.record(testkit_record)
    if expect_duplicates:
        assert duplicates, f"seed {testkit_seed}: repeated corruption_detected events went unnoticed"
    else:
        assert not duplicates, f"seed {testkit_seed}: {verdict.summary()}"
