"""Snapshot campaigns: crash a worker that appends AND saves snapshots, then check the snapshot it left.

One worker per crash (forked from the workload zygote) appends agent traffic while its snapshot
client saves full and incremental snapshots every few milliseconds (:mod:`snapshot_workload`); the
crash is a SIGKILL, a power cut of a loop-mounted ext4, or the POSIX crash model on a strace of the
worker. After each crash the store is reopened: the event log is judged with the durability checker,
the loaded snapshot with :func:`~testkit.checkers.snapshots.check_snapshot`, and under the POSIX model
the trace's order of writes, fsyncs, renames and directory fsyncs with
:func:`~testkit.faults.syscall_order.check_atomic_publish`.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from testkit.adapters.base import AdapterError, SnapshotCapable
from testkit.adapters.factory import AdapterSpec
from testkit.checkers import check_durability
from testkit.checkers.snapshots import check_snapshot
from testkit.faults._system import fsync_directory
from testkit.faults.errors import InvalidFaultSpec
from testkit.faults.snapshot_workload import SNAPSHOT_NAME, load_snapshot_journal
from testkit.faults.workload import Phase, WorkloadServer, WorkloadSpec, load_history

__all__ = ["SNAPSHOT_FAULTS", "SnapshotCampaignResult", "SnapshotRecovery", "recover_snapshot",
           "run_snapshot_crashes"]

SnapshotFault = Literal["sigkill", "power_cut", "posix_crash"]
SNAPSHOT_FAULTS: tuple[SnapshotFault, ...] = ("sigkill", "power_cut", "posix_crash")
CRASH_DELAY_S = (0.03, 0.2)


@dataclass
class SnapshotCampaignResult:
    """Cases run and proven, acknowledged saves seen, and one sentence per broken rule."""

    fault: str
    cases: int = 0
    proven: int = 0
    acked_saves: int = 0
    snapshots_checked: int = 0
    failures: list[str] = field(default_factory=list)
    order_problems: list[str] = field(default_factory=list)
    faults: list[Any] = field(default_factory=list)  # each crash's FaultRecords, for the campaign's picture
    journal_dir: str = ""  # where every incarnation's journal is (the picture's operations)


@dataclass(frozen=True, slots=True)
class SnapshotRecovery:
    """What a reopened store holds: its events, its newest snapshot (None: none loads), its health."""

    events: list[Any]
    snapshot: tuple[int, Any] | None
    health: dict[str, Any]


async def _recover(adapter: AdapterSpec, data_dir: str) -> SnapshotRecovery:
    store = adapter.create(data_dir)
    if not isinstance(store, SnapshotCapable):
        raise InvalidFaultSpec(f"{adapter.name} has no snapshots (save_snapshot/load_snapshot)")
    await store.open()
    try:
        events = [event async for event in store.read_all()]
        try:
            snapshot: tuple[int, Any] | None = await store.load_snapshot(SNAPSHOT_NAME)
        except AdapterError as exc:
            if exc.code != "snapshot_not_found":
                raise
            snapshot = None
        health = getattr(store, "health", None)
        return SnapshotRecovery(events, snapshot, health() if callable(health) else {})
    finally:
        await store.close()


def recover_snapshot(adapter: AdapterSpec, data_dir: str) -> SnapshotRecovery:
    return asyncio.run(_recover(adapter, data_dir))


def _judge(result: SnapshotCampaignResult, case: int, spec: WorkloadSpec) -> None:
    recovered = recover_snapshot(spec.adapter, spec.data_dir)
    saves = load_snapshot_journal(spec.journal_dir)
    result.acked_saves = sum(1 for s in saves if s.outcome == "ok")
    ranges = [tuple(r) for key in ("voided_sequences", "lost_sequences") for r in recovered.health.get(key, [])]
    verdict = check_durability(load_history(spec.journal_dir), recovered.events, voided=ranges)  # type: ignore[arg-type]
    if not verdict.ok:
        result.failures.append(f"case {case}: {verdict.summary()}")
    damage = [d for d in recovered.health.get("damage", []) if d.get("kind") != "torn_tail"]
    damaged_snapshots = recovered.health.get("details", {}).get("damaged_snapshots", [])
    if damage or damaged_snapshots:
        result.failures.append(f"case {case}: damage reported after a crash: {damage[:3]} {damaged_snapshots[:3]}")
    if recovered.snapshot is not None:
        result.snapshots_checked += 1
    for problem in check_snapshot(saves, recovered.snapshot, recovered.events):
        result.failures.append(f"case {case}: {problem}")


def run_snapshot_crashes(
    adapter: AdapterSpec, fault: SnapshotFault, crashes: int, root: Path, rng: random.Random, seed: int, *,
    every_s: float = 0.01, until_caught: bool = False, preload: Sequence[str] = (),
) -> SnapshotCampaignResult:
    """``crashes`` crash-recover cycles of one data directory under ``fault``; ``until_caught`` stops at the
    first broken rule (quick checks of a broken store); ``preload`` names modules the workers need (where
    a test-only store class lives)."""
    if fault not in SNAPSHOT_FAULTS:
        raise InvalidFaultSpec(f"fault must be one of {SNAPSHOT_FAULTS}, got {fault!r}")
    from testkit.faults.persistence import DISK_SYNC_DELAY_US, PosixCrashModel, SyscallTrace
    from testkit.faults.powerloss import LoopExt4
    from testkit.faults.syscall_order import check_atomic_publish

    result = SnapshotCampaignResult(fault)
    journal_dir = root / "journal"
    result.journal_dir = str(journal_dir)
    journal_dir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        disk = stack.enter_context(LoopExt4(64)) if fault == "power_cut" else None
        data_dir = (disk.path if disk is not None else root) / "data"
        data_dir.mkdir()
        fsync_directory(data_dir.parent)
        trace = stack.enter_context(SyscallTrace(sync_delay_us=DISK_SYNC_DELAY_US)) if fault == "posix_crash" else None
        spec = WorkloadSpec(adapter, str(data_dir), str(journal_dir), seed=seed, clients=3,
                            snapshot_every_s=every_s, phases=(Phase(seconds=30.0),))
        server = stack.enter_context(WorkloadServer(spec, preload=preload, wrapper=trace.wrapper if trace else ()))
        # A POSIX crash state that happens to find everything synced drops nothing and proves nothing (a quick
        # disk on a quiet machine makes that common): go on past ``crashes`` (up to three times as many) until
        # one crash dropped data, as run_posix_crashes does.
        case = 0
        while case < crashes or (fault == "posix_crash" and not result.proven and case < 3 * crashes):
            model = None
            if trace is not None:
                trace.mark()
                model = PosixCrashModel(data_dir)
            worker = server.spawn(case)
            if server.wait_writing(worker) is None:
                result.failures.append(f"case {case}: the store did not open: {server.result(worker)}")
            time.sleep(rng.uniform(*CRASH_DELAY_S))  # the fault's moment: appends and saves in flight
            proven = False
            if disk is not None:
                frozen = server.freeze(worker)
                power = disk.cut_power()
                kill = server.kill9(worker)
                result.faults.append(power)
                disk.remount()
                proven = frozen.proven and power.proven and kill.proven
            else:
                kill = server.kill9(worker)
                result.faults.append(kill)
                proven = kill.proven
                if trace is not None and model is not None:
                    complete = trace.wait_for_death(worker.pid, timeout=30.0)
                    lines = trace.lines()
                    result.order_problems.extend(check_atomic_publish(lines, data_dir))
                    model.feed(lines)
                    proven = proven and complete and model.crash(rng).proven
            result.cases += 1
            result.proven += int(proven)
            _judge(result, case, spec)
            case += 1
            if until_caught and (result.failures or result.order_problems):
                break
    return result
