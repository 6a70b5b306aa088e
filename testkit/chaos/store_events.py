"""The store's own events under reopens: a store that records damage must record it once, not once per open.

Some stores write events of their own (lighthouse records each damaged range it finds as a
``corruption_detected`` event). This campaign writes traffic, damages the data once (a function that
knows the format), reopens the store several times and holds every event it reads, its own included,
to the history checker: a store that repeats its own event on each open is caught as a duplicate.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from testkit.adapters import AdapterSpec
from testkit.chaos.judging import Tally, is_store_generated
from testkit.chaos.result import CampaignResult
from testkit.checkers import check_durability
from testkit.faults.records import FaultRecord
from testkit.faults.workload import Phase, WorkloadSpec, load_history, recover, run_incarnation

__all__ = ["run_store_event_reopens"]


def run_store_event_reopens(
    adapter: AdapterSpec, root: Path, seed: int, *, damage: Callable[[Path], FaultRecord],
    judge_adapter: AdapterSpec | None = None, reopens: int = 3, ops_per_client: int = 30,
) -> CampaignResult:
    """Write traffic, ``damage(data_dir)`` once, reopen ``reopens`` times with ``judge_adapter`` (one that
    yields the store's own events), judge the last read. Needs the damage proven and the store to have
    recorded at least one event of its own about it."""
    spec = WorkloadSpec(adapter, str(root / "data"), str(root / "journal"), seed=seed, clients=2,
                        phases=(Phase(ops_per_client=ops_per_client),))
    Path(spec.journal_dir).mkdir(parents=True)
    run_incarnation(spec, 0)
    fault = damage(Path(spec.data_dir))
    judge = judge_adapter or adapter
    recovered = [recover(judge, spec.data_dir) for _ in range(reopens)][-1]
    own = [event for event in recovered.events if is_store_generated(event)]
    verdict = check_durability(load_history(spec.journal_dir), recovered.events,
                               voided=[*recovered.voided_ranges(), *recovered.lost_ranges()],
                               store_generated=is_store_generated)
    duplicates = verdict.violation_counts.get("duplicate", 0)
    result = CampaignResult(Tally("store_events", adapter.name), caught=[bool(duplicates)])
    result.tally.case(fault.proven)
    result.tally.violated("no_duplicate", duplicates)
    result.fault(fault.kind, fault.proven, fault.detail)
    result.parameters.update(reopens=reopens, store_events=len(own))
    if duplicates:
        result.failures.append(f"after {reopens} reopens: {verdict.summary()}")
    result.need(fault.proven, f"the damage was not proven: {fault.detail}")
    result.need(bool(own), "the store recorded no event of its own about the damage")
    return result
