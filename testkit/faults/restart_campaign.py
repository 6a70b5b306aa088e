"""Restart campaigns: clients that retry across crashes, and incarnations that append right after recovery.

Each worker incarnation first reads a sample of earlier acknowledged events back by id, then re-sends
a share of the previous incarnation's acknowledged and unknown-outcome writes with the same ids (what
a real client does after a restart), then appends new traffic until it is crashed (SIGKILL, or the
POSIX crash model, which also tears unsynced tails). Only some crashes are followed by a judge: after
the others the next incarnation is the first to open the store, so it recovers the torn tail itself
and appends behind it, and the judge that comes later sees what that did. Every judge reopens the
store: damage it reports after crashes (anything but a torn tail) is a violation, as is any lost,
duplicated (the store's own events included, when the adapter yields them), refused-yet-present or
unvoided write, and any event ``get`` did not return as acknowledged.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from testkit.adapters.factory import AdapterSpec
from testkit.checkers import check_durability
from testkit.checkers.voids import check_voids_required
from testkit.faults.errors import InvalidFaultSpec
from testkit.faults.workload import Phase, WorkloadServer, WorkloadSpec, load_history, readback_problems, recover

__all__ = ["RESTART_FAULTS", "RestartCampaignResult", "run_restart_cycles"]

RestartFault = Literal["sigkill", "posix_crash"]
RESTART_FAULTS: tuple[RestartFault, ...] = ("sigkill", "posix_crash")
CRASH_DELAY_S = (0.02, 0.12)


@dataclass
class RestartCampaignResult:
    """Crashes run and proven, judges run, what the retries and read-backs covered, and every failure."""

    fault: str
    cases: int = 0
    proven: int = 0
    judged: int = 0
    unjudged_reopens: int = 0  # incarnations that were the first to open the store after a crash
    torn: int = 0  # crashes followed by a torn write at the end of the log
    resent: int = 0
    read_back: int = 0
    failures: list[str] = field(default_factory=list)
    kills: list[Any] = field(default_factory=list)  # each crash's FaultRecord, for the campaign's picture
    journal_dir: str = ""  # where every incarnation's journal is (the picture's operations)


def _judge(result: RestartCampaignResult, case: int, spec: WorkloadSpec, judge_adapter: AdapterSpec,
           store_generated: Callable[[Any], bool] | None) -> None:
    result.judged += 1
    recovered = recover(judge_adapter, spec.data_dir)
    history = load_history(spec.journal_dir)
    ranges = [*recovered.voided_ranges(), *recovered.lost_ranges()]
    verdict = check_durability(history, recovered.events, voided=ranges, store_generated=store_generated)
    if not verdict.ok:
        details = "; ".join(f"{v.kind.value} {list(v.event_ids[:2])} {list(v.sequences[:2])}"
                            for v in verdict.violations[:4])
        result.failures.append(f"case {case}: {verdict.summary()} {details}")
    damage = [d for d in (recovered.health or {}).get("damage", []) if d.get("kind") != "torn_tail"]
    if damage:
        result.failures.append(f"case {case}: the reopen reports damage after crashes: {damage[:2]}")
    result.failures.extend(f"case {case}: {p}" for p in check_voids_required(history, recovered.voided_ranges(),
                                                                              recovered.events))
    checked, problems = readback_problems(spec.journal_dir)
    result.read_back = checked
    result.failures.extend(f"case {case}: {p}" for p in problems[:5])
    result.resent = _resent(history)


def _resent(history: Any) -> int:
    """Writes whose ids an earlier write already carried (a retry across a restart)."""
    seen: set[str] = set()
    count = 0
    for op in history:
        if op.event_ids and op.event_ids[0] in seen:
            count += 1
        seen.update(op.event_ids)
    return count


def run_restart_cycles(
    adapter: AdapterSpec, fault: RestartFault, crashes: int, root: Path, rng: random.Random, seed: int, *,
    judge_adapter: AdapterSpec | None = None, store_generated: Callable[[Any], bool] | None = None,
    resend_share: float = 0.3, readback: int = 20, judge_share: float = 0.5, preload: Sequence[str] = (),
    tear: Callable[[Path, random.Random], Any] | None = None, tear_share: float = 0.5, until_caught: bool = False,
) -> RestartCampaignResult:
    """``crashes`` crash-restart cycles of one data directory. ``judge_adapter`` opens the store for judging
    (default ``adapter``; give one that also yields the store's own events to check them for duplicates).
    ``tear(data_dir, rng)``, after ``tear_share`` of the crashes, leaves a torn write at the end of the log
    (it knows the store's files; a SIGKILL alone never tears what reached the page cache), so that the
    next incarnation has a torn tail to cut before it appends."""
    if fault not in RESTART_FAULTS:
        raise InvalidFaultSpec(f"fault must be one of {RESTART_FAULTS}, got {fault!r}")
    from testkit.faults.persistence import DISK_SYNC_DELAY_US, PosixCrashModel, SyscallTrace

    result = RestartCampaignResult(fault)
    data_dir, journal_dir = root / "data", root / "journal"
    result.journal_dir = str(journal_dir)
    data_dir.mkdir(parents=True)
    journal_dir.mkdir()
    spec = WorkloadSpec(adapter, str(data_dir), str(journal_dir), seed=seed, clients=3, resend_share=resend_share,
                        readback=readback, phases=(Phase(seconds=30.0),))
    with ExitStack() as stack:
        trace = stack.enter_context(SyscallTrace(sync_delay_us=DISK_SYNC_DELAY_US)) if fault == "posix_crash" else None
        server = stack.enter_context(WorkloadServer(spec, preload=preload, wrapper=trace.wrapper if trace else ()))
        for case in range(crashes):
            model = None
            if trace is not None:
                trace.mark()
                model = PosixCrashModel(data_dir)
            worker = server.spawn(case)
            if server.wait_writing(worker) is None:
                result.failures.append(f"case {case}: the store did not open: {server.result(worker)}")
            time.sleep(rng.uniform(*CRASH_DELAY_S))  # the fault's moment: retries and appends in flight
            kill = server.kill9(worker)
            result.kills.append(kill)
            proven = kill.proven
            if trace is not None and model is not None:
                complete = trace.wait_for_death(worker.pid, timeout=30.0)
                model.feed(trace.lines())
                proven = proven and complete and model.crash(rng).proven
            if tear is not None and rng.random() < tear_share:
                tear(data_dir, rng)
                result.torn += 1
            result.cases += 1
            result.proven += int(proven)
            if case + 1 == crashes or rng.random() < judge_share:
                _judge(result, case, spec, judge_adapter or adapter, store_generated)
            else:
                result.unjudged_reopens += 1
            if until_caught and result.failures:
                break
    return result

