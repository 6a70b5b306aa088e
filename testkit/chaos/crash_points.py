"""Whitebox kills at named points of a store's write path (RocksDB-style kill points), for adapters that offer them.

An adapter offers crash points through its :class:`~testkit.chaos.capabilities.Capabilities`: the
names, and a factory that accepts ``crash_point=NAME, crash_at=N`` and SIGKILLs its own process at
the Nth pass through that point. Crashes then land exactly between a write, its fsync and its ack,
which random kills hit only by luck.
"""

from __future__ import annotations

import random
import signal
from pathlib import Path

from testkit.adapters import AdapterSpec
from testkit.chaos.judging import Tally, recover_and_judge
from testkit.chaos.preload import modules_of
from testkit.chaos.reader_process import ReaderProcess
from testkit.chaos.result import CampaignResult
from testkit.faults.workload import Phase, WorkloadServer, WorkloadSpec

__all__ = ["run_crash_point_kills"]

#: A worker that never reaches its crash point ends after this long (and counts as not proven).
PHASE_SECONDS = 10.0


def run_crash_point_kills(adapter: AdapterSpec, crash_point: str, cycles: int, root: Path, rng: random.Random,
                          seed: int, *, max_pass: int = 30) -> CampaignResult:
    """``cycles`` workers, each killed by the store itself at a random pass (1..``max_pass``) of ``crash_point``.

    ``adapter`` must be the crash-point factory (its options get ``crash_point`` and ``crash_at``). One
    short clean incarnation runs first, so that points reached only in recovery have a log to recover.
    """
    result = CampaignResult(Tally(f"sigkill@{crash_point}", adapter.name))
    spec = WorkloadSpec(adapter, str(root / "data"), str(root / "journal"), seed=seed,
                        phases=(Phase(seconds=PHASE_SECONDS),))
    Path(spec.journal_dir).mkdir(parents=True, exist_ok=True)
    modules = modules_of(adapter)
    with WorkloadServer(spec, preload=modules) as server, ReaderProcess(modules) as reader:
        server.join(server.spawn(cycles, spec.replace(phases=(Phase(ops_per_client=5),))))
        for cycle in range(cycles):
            at = rng.randint(1, max_pass)
            options = dict(adapter.options, crash_point=crash_point, crash_at=at, crash_seed=rng.getrandbits(32))
            worker = server.spawn(cycle, spec.replace(adapter=AdapterSpec(adapter.name, adapter.factory, options)))
            died_there = server.join(worker, timeout=60.0) == -signal.SIGKILL
            result.tally.case(died_there)
            judgement, recovered, damage = recover_and_judge(spec.adapter, spec.data_dir, spec.journal_dir,
                                                          reader=reader)
            result.judged(cycle, judgement, damage, recovered, spec.journal_dir)
    return result
