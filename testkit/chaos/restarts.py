"""Restart campaigns as chaos-kit results: clients that retry across crashes, appends right after recovery.

:func:`testkit.faults.restart_campaign.run_restart_cycles` drives the crash-restart cycles (each
incarnation reads acknowledged events back by id, re-sends some earlier writes with the same ids,
appends, is crashed; only some crashes are judged at once). This maps its outcome onto the chaos
matrix and names what a clean run must have exercised to mean anything: a retry, a read-back, an
incarnation that was the first to open after a crash and, when a ``tear`` is given, a torn tail.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from testkit.adapters import AdapterSpec
from testkit.chaos.judging import is_store_generated
from testkit.chaos.preload import modules_of
from testkit.chaos.result import CampaignResult
from testkit.faults.restart_campaign import RestartCampaignResult, RestartFault, run_restart_cycles

__all__ = ["run_restarts"]


def run_restarts(
    adapter: AdapterSpec, fault: RestartFault, crashes: int, root: Path, rng: random.Random, seed: int, *,
    judge_adapter: AdapterSpec | None = None, tear: Callable[[Path, random.Random], Any] | None = None,
    until_caught: bool = False,
) -> CampaignResult:
    """``crashes`` crash-restart cycles (``sigkill`` or ``posix_crash``) of one data directory, judged.

    ``judge_adapter`` opens the store for judging (give one that also yields the store's own events to hold
    them to no-duplicates); ``tear(data_dir, rng)`` leaves a torn write at the end of the log after some
    crashes. ``until_caught`` stops at the first failing check (a seeded bug) and then needs nothing more.
    """
    preload = modules_of(judge_adapter or adapter)
    cycles = run_restart_cycles(adapter, fault, crashes, root, rng, seed, judge_adapter=judge_adapter,
                                store_generated=is_store_generated, preload=preload, tear=tear,
                                until_caught=until_caught)
    result = _as_campaign_result(cycles, f"restart_{fault}", adapter.name)
    if not until_caught:
        result.need(cycles.unjudged_reopens >= 1, "no incarnation opened the store before a judge did")
        result.need(cycles.resent >= 1, "nothing was retried across a restart")
        result.need(cycles.read_back >= 1, "nothing was read back by id")
        if tear is not None:
            result.need(cycles.torn >= 1, "no crash left a torn tail")
    return result


def _as_campaign_result(cycles: RestartCampaignResult, fault_kind: str, sut: str) -> CampaignResult:
    result = CampaignResult.from_checks(fault_kind, sut, cases=cycles.cases, proven=cycles.proven,
                                        failures=cycles.failures)
    result.fault(fault_kind, cycles.proven > 0,
                 f"{cycles.proven}/{cycles.cases} crashes proven; {cycles.resent} writes re-sent, "
                 f"{cycles.read_back} events read back by id, {cycles.unjudged_reopens} unjudged reopens, "
                 f"{cycles.torn} torn tails")
    result.parameters.update(resent=cycles.resent, read_back=cycles.read_back,
                             unjudged_reopens=cycles.unjudged_reopens, torn_tails=cycles.torn)
    result.draw_from_journals(cycles.kills, cycles.journal_dir, fault_kind)
    return result
