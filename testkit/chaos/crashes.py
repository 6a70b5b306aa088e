"""Crash campaigns: SIGKILL cycles, power cuts on loop ext4, and the POSIX crash model, against any adapter.

Each injects one kind of crash many times into a running workload (:mod:`testkit.faults.workload`:
agent traffic in forked children, every write journalled), recovers the store and judges it against
the journals. It returns a :class:`~testkit.chaos.result.CampaignResult`: the tally for the chaos
matrix, one description per failing check, and per attempt whether it caught a *new* loss (which is
how an expected-unsafe configuration's catch rate is measured).
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from testkit.adapters import AdapterSpec
from testkit.chaos.judging import Judgement, Tally, recover_and_judge
from testkit.chaos.preload import modules_of
from testkit.chaos.reader_process import ReaderProcess
from testkit.chaos.result import CampaignResult
from testkit.faults._system import fsync_directory
from testkit.faults.powerloss import LoopExt4
from testkit.faults.workload import Phase, WorkloadServer, WorkloadSpec

__all__ = ["run_kill_cycles", "run_posix_crashes", "run_power_cuts"]

CYCLES_PER_DIRECTORY = 50
CHECK_EVERY = 10
KILL_DURING_OPEN_SHARE = 0.1
KILL_DELAY_S = (0.0, 0.12)
CUT_DELAY_S = (0.005, 0.08)


def run_kill_cycles(
    adapter: AdapterSpec, cycles: int, root: Path, rng: random.Random, seed: int, *,
    kill_delay_s: tuple[float, float] = KILL_DELAY_S,
) -> CampaignResult:
    """SIGKILL a worker ``cycles`` times at random moments (10% inside recovery), judging every few cycles.

    ``kill_delay_s``: the kill lands this long after the incarnation's first acknowledged write (so that
    writes are in flight however slowly the store opens and commits on a loaded machine)."""
    result = CampaignResult(Tally("sigkill", adapter.name))
    base = WorkloadSpec(adapter, str(root / "d0"), str(root / "j0"), seed=seed)
    modules = modules_of(adapter)
    with WorkloadServer(base, preload=modules) as server, ReaderProcess(modules) as reader:
        spec = base
        for cycle in range(cycles):
            if cycle % CYCLES_PER_DIRECTORY == 0:  # bound the log (and recovery time) per directory
                generation = cycle // CYCLES_PER_DIRECTORY
                spec = base.replace(data_dir=str(root / f"d{generation}"), journal_dir=str(root / f"j{generation}"))
                Path(spec.journal_dir).mkdir(parents=True, exist_ok=True)
            worker = server.spawn(cycle, spec)
            if rng.random() < KILL_DURING_OPEN_SHARE:
                time.sleep(rng.uniform(0.0, 0.03))  # the fault's moment: possibly inside recovery
            else:
                if server.wait_writing(worker) is None:
                    error = (server.result(worker) or {}).get("open_error")
                    result.problem(f"cycle {cycle}: the store did not open: {error}", "recovers")
                time.sleep(rng.uniform(*kill_delay_s))  # the fault's moment: appends in flight
            record = server.kill9(worker)
            result.timeline.fault(record)
            result.tally.case(record.proven)
            last_of_directory = (cycle + 1) % CYCLES_PER_DIRECTORY == 0 or cycle + 1 == cycles
            if (cycle + 1) % CHECK_EVERY == 0 or last_of_directory:
                result.judged(cycle, *_judge(spec, reader))
    return result


def run_power_cuts(
    adapter: AdapterSpec, cuts: int, root: Path, rng: random.Random, seed: int, *,
    fault_kind: str = "power_cut", size_mb: int = 64, until_caught: bool = False,
    cut_delay_s: tuple[float, float] = CUT_DELAY_S,
) -> CampaignResult:
    """Cut power to a loop-mounted ext4 under a running worker ``cuts`` times; remount, recover, judge each.

    ``until_caught`` stops at the first cut that lost an acknowledged event (quick sensitivity checks).
    ``cut_delay_s``: the cut lands this long after the incarnation's first acknowledged write.
    """
    result = CampaignResult(Tally(fault_kind, adapter.name))
    journal_dir = root / "journal"
    journal_dir.mkdir(parents=True, exist_ok=True)
    with LoopExt4(size_mb) as disk:
        data_dir = disk.path / "data"
        data_dir.mkdir()
        fsync_directory(disk.path)  # the data directory itself is durable before anything else happens
        spec = WorkloadSpec(adapter, str(data_dir), str(journal_dir), seed=seed)
        modules = modules_of(adapter)
        with WorkloadServer(spec, preload=modules) as server, ReaderProcess(modules) as reader:
            for cut in range(cuts):
                worker = server.spawn(cut)
                if server.wait_writing(worker) is None:
                    result.tally.violated("recovers")
                    error = (server.result(worker) or {}).get("open_error")
                    result.failures.append(f"cut {cut}: the store did not open: {error}")
                time.sleep(rng.uniform(*cut_delay_s))  # the fault's moment: appends in flight
                # Freeze first: like a real cut, nothing the worker does after this instant is seen.
                frozen = server.freeze(worker)
                power = disk.cut_power()
                kill = server.kill9(worker)
                result.timeline.fault(power, fault_kind)
                result.tally.case(frozen.proven and power.proven and kill.proven)
                if not power.proven:
                    result.failures.append(f"cut {cut}: power cut not proven: {power.detail}")
                disk.remount()
                result.judged(cut, *_judge(spec, reader))
                if until_caught and result.catches:
                    break
    return result


def _judge(spec: WorkloadSpec, reader: ReaderProcess) -> tuple[Judgement, list[dict[str, object]], object, str]:
    judgement, recovered, damage = recover_and_judge(spec.adapter, spec.data_dir, spec.journal_dir, reader=reader)
    return judgement, damage, recovered, spec.journal_dir



def run_posix_crashes(
    adapter: AdapterSpec, crashes: int, root: Path, rng: random.Random, seed: int, *, fault_kind: str = "posix_crash",
    min_proven: int = 1, min_catches: int = 0, until_caught: bool = False, inject: tuple[str, ...] = (),
    sync_delay_us: int | None = None,
) -> CampaignResult:
    """Kill a traced worker, then leave only what POSIX guarantees (see :mod:`testkit.faults.persistence`).

    A crash that lands when everything happened to be synced drops nothing and proves nothing, so the
    campaign goes on past ``crashes`` (up to three times as many) until ``min_proven`` crashes dropped data,
    and, for a configuration expected to lose writes, until ``min_catches`` crashes caught a loss (whether a
    crash state loses anything depends on where the kill landed, e.g. LMDB without sync in 1 of 5).
    ``until_caught`` stops at the first crash that lost an acknowledged event. ``inject`` fails chosen calls
    in the same strace run (see :class:`~testkit.faults.persistence.SyscallTrace`). Every sync is held
    ``sync_delay_us`` (default :data:`~testkit.faults.persistence.DISK_SYNC_DELAY_US`) at its start, as a disk
    would: on tmpfs a sync is instant and a kill at a random moment then almost never finds unsynced bytes.
    """
    from testkit.faults.persistence import DISK_SYNC_DELAY_US, PosixCrashModel, SyscallTrace

    result = CampaignResult(Tally(fault_kind, adapter.name))
    data_dir, journal_dir = root / "data", root / "journal"
    data_dir.mkdir(parents=True)
    journal_dir.mkdir()
    spec = WorkloadSpec(adapter, str(data_dir), str(journal_dir), seed=seed)
    delay = DISK_SYNC_DELAY_US if sync_delay_us is None else sync_delay_us
    modules = modules_of(adapter)
    with SyscallTrace(inject=inject, sync_delay_us=delay) as trace, ReaderProcess(modules) as reader, \
            WorkloadServer(spec, preload=modules, wrapper=trace.wrapper) as server:
        # A store that exists before the trace starts: creating one is not what this model judges. Its
        # incarnation number is past every crash's, so no crash reuses its journal.
        server.join(server.spawn(3 * crashes, spec.replace(phases=(Phase(ops_per_client=2),))))
        crash = 0
        while crash < crashes or ((result.tally.proven < min_proven or result.catches < min_catches)
                                  and crash < 3 * crashes):
            trace.mark()
            model = PosixCrashModel(data_dir)
            worker = server.spawn(crash)
            if server.wait_writing(worker) is None:
                result.tally.violated("recovers")
                result.failures.append(f"crash {crash}: the store did not open: {server.result(worker)}")
            time.sleep(rng.uniform(*KILL_DELAY_S))  # the fault's moment: appends in flight
            kill = server.kill9(worker)
            result.timeline.fault(kill, fault_kind)
            complete = trace.wait_for_death(worker.pid, timeout=30.0)
            lines = trace.lines()
            if not complete:
                result.failures.append(
                    f"crash {crash}: strace never logged the death of worker {worker.pid} ({kill.detail}); "
                    f"{len(lines)} lines since the mark, last: {lines[-3:]}")
            model.feed(lines)
            result.injected += sum(model.injected.values())
            state = model.crash(rng)
            result.tally.case(kill.proven and complete and state.proven)
            if not state.proven:  # kept for the message when too few crash states proved anything
                result.fault(fault_kind, False, f"crash {crash}: {state.detail}")
            result.judged(crash, *_judge(spec, reader))
            crash += 1
            if until_caught and result.catches:
                break
    return result
