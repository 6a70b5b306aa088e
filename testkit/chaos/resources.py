"""Resource exhaustion in a child: no file descriptor to spare, little address space, files capped in size.

The worker appends agent traffic in three phases: before, under the limit, after. The limit is lowered
in the worker only (a lowered hard limit can never be raised again) relative to what the worker uses
at that moment, and proven by a self-probe (EMFILE, MemoryError, EFBIG) before the phase runs.
"""

from __future__ import annotations

from pathlib import Path

from testkit.adapters import AdapterSpec
from testkit.chaos.judging import Tally
from testkit.chaos.preload import modules_of
from testkit.chaos.result import CampaignResult
from testkit.chaos.worker_phases import judge_phased_worker
from testkit.faults.rlimits import Limits
from testkit.faults.workload import Phase, WorkloadServer, WorkloadSpec

__all__ = ["PRESSURE", "RESUME_ACKS", "run_resource_pressure"]

PRESSURE: dict[str, Phase] = {
    # Not one descriptor to spare: a store that opens files as it grows must do so under the limit.
    "rlimit_nofile": Phase(name="pressure", ops_per_client=15, headroom=Limits(nofile=1)),
    # No address space to spare while events of 400-900 KB arrive (each needs fresh mappings).
    "rlimit_as": Phase(name="pressure", ops_per_client=6, headroom=Limits(address_space=1),
                       payload_min_bytes=400_000, payload_max_bytes=900_000),
    # Data files may grow 16 KiB more, then writes meet a short write and EFBIG.
    "rlimit_fsize": Phase(name="pressure", ops_per_client=15, headroom=Limits(file_size=16 * 1024)),
}
RESUME_ACKS = 10


def run_resource_pressure(adapter: AdapterSpec, limit: str, root: Path, seed: int) -> CampaignResult:
    """One :data:`PRESSURE` limit between a phase before and a phase after; judged like any phased worker."""
    result = CampaignResult(Tally(limit, adapter.name))
    phases = (Phase(name="before", ops_per_client=8), PRESSURE[limit],
              Phase(name="after", seconds=20.0, until_acks=RESUME_ACKS))
    spec = WorkloadSpec(adapter, str(root / "data"), str(root / "journal"), seed=seed, clients=2, phases=phases)
    with WorkloadServer(spec, preload=modules_of(adapter)) as server:
        worker = server.spawn(0)
        code = server.join(worker, timeout=120.0)
        outcome = server.result(worker)
    if code != 0 or outcome is None or not outcome["opened"]:
        result.problem(f"the worker failed (exit {code}): {outcome}", "recovers")
        return result
    pressure = outcome["phases"][1]
    proofs = pressure["limit_records"]
    result.tally.case(bool(proofs) and all(r["proven"] for r in proofs))
    for record in proofs:
        result.fault(record["kind"], record["proven"], record["detail"], (record["t_start"], record["t_end"]))
        result.timeline.fault(record)
    judge_phased_worker(result, spec, outcome, resume_acks=RESUME_ACKS, what="the limit was lifted")
    result.parameters.update(refused_under_pressure=pressure["errors"], acked_under_pressure=pressure["ok"],
                             harness_errors=pressure["harness_errors"])
    return result
