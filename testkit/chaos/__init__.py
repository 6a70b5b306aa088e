"""The chaos kit: every fault campaign of the shipped chaos suite as a public function, for any store.

The Jepsen split: a *test* is a system under test (:class:`SystemUnderTest`: an adapter spec, what it
offers, what it is expected to lose) + a workload (agent traffic, every write journalled:
:mod:`testkit.faults.workload`) + a nemesis (one campaign below) + a checker (:func:`judge`, the
history verdict mapped onto the fault x invariant matrix). Each campaign returns a
:class:`CampaignResult`; :func:`settle` records it and passes or fails it against the expectation.

Campaigns: :func:`run_kill_cycles` (SIGKILL, also during open), :func:`run_crash_point_kills` (named
crash points), :func:`run_power_cuts` (loop ext4 + FS_IOC_SHUTDOWN), :func:`run_posix_crashes` (the
POSIX crash model over traced syscalls), :func:`run_disk_full`, :func:`run_inodes_exhausted`,
:func:`run_read_only_remount`, :func:`run_open_on_full_disk`, :func:`run_resource_pressure`
(RLIMIT_NOFILE/AS/FSIZE), :func:`run_io_errors` (LD_PRELOAD errors and short writes),
:func:`run_network_fault` (TCP fault proxy), :func:`run_generic_corruption` (any format),
:func:`run_restarts` (clients retrying across crash-restarts), :func:`run_snapshot_campaign` (crashes
while saving snapshots), :func:`run_failed_syncs` (fsyncgate), :func:`run_store_event_reopens` (the
store's own events across reopens). :func:`expect_caught` judges a seeded bug (it must fail a check);
:func:`run_mutants` runs a suite against a catalogue of seeded bugs. The shipped
suite is ``pytest --pyargs testkit.chaos.suite --testkit-adapter PKG.MODULE:FACTORY``, or
``testkit chaos --adapter PKG.MODULE:FACTORY``. Submodules import lazily, so the kit imports fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "CampaignResult", "Capabilities", "ChaosFailure", "Judgement", "Mutant", "SystemUnderTest", "Tally",
    "expect_caught", "judge", "recover_and_judge", "run_crash_point_kills", "run_disk_full", "run_failed_syncs",
    "run_generic_corruption", "run_inodes_exhausted", "run_io_errors", "run_kill_cycles", "run_mutants",
    "run_network_fault", "run_open_on_full_disk", "run_posix_crashes", "run_power_cuts", "run_read_only_remount",
    "run_resource_pressure", "run_restarts", "run_snapshot_campaign", "run_store_event_reopens", "settle",
]

_HOME = {
    "CampaignResult": "result", "ChaosFailure": "result", "Capabilities": "capabilities", "Judgement": "judging",
    "Tally": "judging", "judge": "judging", "recover_and_judge": "judging", "SystemUnderTest": "sut",
    "run_kill_cycles": "crashes", "run_power_cuts": "crashes", "run_posix_crashes": "crashes",
    "run_crash_point_kills": "crash_points", "run_disk_full": "disk", "run_inodes_exhausted": "disk",
    "run_read_only_remount": "disk", "run_open_on_full_disk": "disk", "run_io_errors": "io_errors",
    "run_resource_pressure": "resources", "run_network_fault": "network",
    "run_generic_corruption": "corruption", "settle": "expectations", "expect_caught": "expectations",
    "run_restarts": "restarts", "run_snapshot_campaign": "snapshots", "run_failed_syncs": "failed_sync",
    "run_store_event_reopens": "store_events", "Mutant": "mutation", "run_mutants": "mutation",
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'testkit.chaos' has no attribute {name!r}")
    return getattr(importlib.import_module(f"testkit.chaos.{_HOME[name]}"), name)
