"""Snapshot campaigns as chaos-kit results: crashes hit a worker that saves snapshots while it appends.

:func:`testkit.faults.snapshot_campaign.run_snapshot_crashes` drives the crashes (SIGKILL, power cut,
POSIX crash model) and checks each recovery: the loaded snapshot is the last acknowledged save (or a
later one cut short), never torn or mixed, and snapshot + later events equal a full replay; under the
POSIX model every save must be write, fsync, rename, directory fsync. This maps the outcome onto the
chaos matrix and needs a clean run to have judged at least one acknowledged save.
"""

from __future__ import annotations

import random
from pathlib import Path

from testkit.adapters import AdapterSpec
from testkit.chaos.preload import modules_of
from testkit.chaos.result import CampaignResult
from testkit.faults.snapshot_campaign import SnapshotFault, run_snapshot_crashes

__all__ = ["run_snapshot_campaign"]


def run_snapshot_campaign(
    adapter: AdapterSpec, fault: SnapshotFault, crashes: int, root: Path, rng: random.Random, seed: int, *,
    until_caught: bool = False,
) -> CampaignResult:
    """``crashes`` crash-recover cycles under ``fault`` of a worker saving snapshots; ``until_caught`` stops
    at the first broken rule (a seeded bug) and then needs nothing more."""
    crashed = run_snapshot_crashes(adapter, fault, crashes, root, rng, seed, until_caught=until_caught,
                                   preload=modules_of(adapter))
    problems = crashed.failures + crashed.order_problems
    fault_kind = f"snapshot_{fault}"
    result = CampaignResult.from_checks(fault_kind, adapter.name, cases=crashed.cases, proven=crashed.proven,
                                        failures=problems)
    result.fault(fault_kind, crashed.proven > 0, f"{crashed.proven}/{crashed.cases} crashes proven, "
                 f"{crashed.acked_saves} acknowledged saves, {crashed.snapshots_checked} snapshots checked")
    result.parameters.update(acked_saves=crashed.acked_saves, snapshots_checked=crashed.snapshots_checked)
    result.draw_from_journals(crashed.faults, crashed.journal_dir, fault_kind)
    if not until_caught:
        result.need(crashed.acked_saves >= 1, "no snapshot save was acknowledged")
        result.need(crashed.snapshots_checked >= 1, "no snapshot was loaded after a crash")
    return result
