"""SIGKILL crash-recover cycles: a store killed at random moments (and at named points) loses nothing it acknowledged.

One data directory is reopened and appended to across many kills, so recovery runs on a growing log
with torn tails from earlier crashes. Workers are forked from a pre-imported zygote, so a cycle costs
about 0.1 s. The checker judges every few cycles and at the end of each directory's life.
"""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import pytest

from testkit.adapters import AdapterSpec
from testkit.faults import append_garbage
from testkit.faults.workload import Phase, WorkloadServer, WorkloadSpec

from . import stores, variants
from .campaigns import run_kill_cycles
from .judging import Tally, recover_and_judge


@pytest.mark.parametrize(
    ("adapter", "default_cycles"),
    [
        pytest.param(stores.lighthouse(segment_bytes=256 * 1024), 200, id="lighthouse"),
        pytest.param(stores.sqlite(), 60, id="sqlite"),
        pytest.param(stores.lighthouse(segment_bytes=64 * 1024), 8, id="lighthouse-smoke", marks=pytest.mark.smoke),
        pytest.param(stores.sqlite(), 5, id="sqlite-smoke", marks=pytest.mark.smoke),
    ],
)
def test_sigkill_cycles_lose_no_acknowledged_event(
    adapter: AdapterSpec, default_cycles: int, tmp_path: Path, testkit_rng: random.Random,
    testkit_record, testkit_seed: int, case_seed: int, scaled,
) -> None:
    testkit_record.sut = adapter.name
    cycles = scaled(default_cycles)
    started = time.monotonic()
    result = run_kill_cycles(adapter, cycles, tmp_path, testkit_rng, case_seed)
    elapsed = time.monotonic() - started
    tally, failures = result.tally, result.failures
    tally.record(testkit_record)
    result.timeline.record(testkit_record)
    testkit_record.fault("sigkill", tally.proven == tally.cases, f"{tally.proven}/{tally.cases} kills proven")
    testkit_record.metric("chaos.sigkill.cycle_seconds", elapsed / cycles, "s")
    assert tally.proven >= 0.9 * tally.cases, (
        f"only {tally.proven}/{tally.cases} SIGKILLs proven (seed {testkit_seed})")
    assert not failures, f"seed {testkit_seed}: {len(failures)} failing checks:\n" + "\n".join(failures[:5])


@pytest.mark.parametrize("crash_point", [
    pytest.param(point, marks=[pytest.mark.smoke] if point == "before_sync" else []) for point in variants.CRASH_POINTS
])
def test_kill_at_named_write_path_points(
    crash_point: str, tmp_path: Path, testkit_rng: random.Random, testkit_record, testkit_seed: int,
    case_seed: int, scaled,
) -> None:
    """Whitebox kills: between write and fsync, fsync and ack, file creation and directory fsync..."""
    adapter = stores.variant(variants.CrashPointStore, segment_bytes=4096)  # tiny segments: frequent rotations
    testkit_record.sut = adapter.name
    cycles = scaled(6)
    tally = Tally(f"sigkill@{crash_point}", "lighthouse")
    failures: list[str] = []
    spec = WorkloadSpec(adapter, str(tmp_path / "data"), str(tmp_path / "journal"), seed=case_seed,
                        phases=(Phase(seconds=10.0),))
    Path(spec.journal_dir).mkdir(parents=True)
    with WorkloadServer(spec, preload=[variants.__name__]) as server:
        if crash_point == "torn_tail_truncated":  # a log to tear: one short, clean incarnation first
            server.join(server.spawn(cycles, spec.replace(phases=(Phase(ops_per_client=5),))))
        for cycle in range(cycles):
            at = testkit_rng.randint(1, 30)
            if crash_point == "torn_tail_truncated":
                # A SIGKILL never tears a write in the page cache; leave a torn tail of garbage instead.
                last_segment = sorted(Path(spec.data_dir).glob("*.seg"))[-1]
                append_garbage(last_segment, testkit_rng.randint(1, 200), testkit_rng).require()
                at = 1
            options = dict(adapter.options, crash_point=crash_point, crash_at=at)
            worker = server.spawn(cycle, spec.replace(adapter=AdapterSpec(adapter.name, adapter.factory, options)))
            died_there = server.join(worker, timeout=60.0) == -signal.SIGKILL
            tally.case(died_there)
            judgement, _, damage = recover_and_judge(spec.adapter, spec.data_dir, spec.journal_dir)
            tally.add(judgement)
            tally.judged_ok("recovers")
            if damage:
                tally.violated("recovers")
                failures.append(f"cycle {cycle}: damage reported after a crash: {damage[:3]}")
            if not judgement.ok:
                failures.append(f"cycle {cycle} (killed at pass {at} of {crash_point}): {judgement.describe()}")
    tally.record(testkit_record)
    testkit_record.fault(f"sigkill@{crash_point}", tally.proven > 0, f"{tally.proven}/{cycles} workers died there")
    assert tally.proven >= 1, f"seed {testkit_seed}: no worker ever reached {crash_point}"
    assert not failures, f"seed {testkit_seed}: " + "\n".join(failures[:5])
