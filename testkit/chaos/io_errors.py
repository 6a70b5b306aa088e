"""Targeted I/O errors: an LD_PRELOAD shim fails write/fsync/fdatasync of the store's own files, or makes writes short.

The worker runs agent traffic in a child under the shim; the shim logs each injection, which proves the
store really met the error. The store must answer with typed errors, lose nothing it acknowledged,
write nothing it refused, and take writes again once the injections stop. The log is recovered in a
child of the caller's process, without the shim. A configuration that never makes the call a scenario
fails (SQLite in WAL with ``synchronous=NORMAL`` or ``OFF`` barely syncs) cannot meet that fault: the
shim's call counts show it, and the result says so (``not_applicable``) instead of failing unproven.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from testkit.adapters import AdapterSpec
from testkit.chaos.judging import Tally
from testkit.chaos.result import CampaignResult
from testkit.chaos.worker_phases import judge_phased_worker
from testkit.faults.ioshim import IoFault
from testkit.faults.process import ChildProcess
from testkit.faults.workload import Phase, WorkloadSpec, run_incarnation

__all__ = ["IO_SCENARIOS", "LIGHTHOUSE_ONLY", "RESUME_ACKS", "only_writes_never_resumed", "run_io_errors"]

IO_SCENARIOS: dict[str, dict[str, Any]] = {
    # A sync fails once: the group it belonged to must not be acknowledged; the next ones may be.
    "fdatasync_eio_once": {"op": ("fsync", "fdatasync"), "errno": "EIO", "after_calls": 15, "times": 1},
    # Aimed at a group's fdatasync alone (fsync of a new segment is counted apart and never hit).
    "group_fdatasync_eio_once": {"op": "fdatasync", "errno": "EIO", "after_calls": 15, "times": 1},
    # The fsync of a new segment (header written, before the directory fsync) fails once: rotation is refused.
    "segment_fsync_eio_once": {"op": "fsync", "errno": "EIO", "after_calls": 1, "times": 1},
    # fsync keeps failing for a while: read-only, then back by itself.
    "fsync_eio_burst": {"op": ("fsync", "fdatasync"), "errno": "EIO", "after_calls": 10, "times": 6},
    "write_eio": {"op": ("write", "pwrite", "writev"), "errno": "EIO", "after_calls": 40, "times": 3},
    # Like a disk filling up: the write crossing the boundary is cut short, the next ones fail.
    "write_enospc_after_bytes": {"op": ("write", "pwrite", "writev"), "errno": "ENOSPC", "after_bytes": 48 * 1024,
                                 "times": 5},
    # Short writes, no error at all, to the end of the run: a store must finish each write (write() may return less
    # than asked), never leave half a frame. One that refuses a short write instead takes none at all, not even
    # in the after phase (a documented limitation: ``Capabilities.finishes_short_writes``).
    "short_writes": {"op": ("write", "pwrite", "writev"), "mode": "short", "after_calls": 5},
}
#: Scenarios aimed at calls only lighthouse is known to make (a group's fdatasync; fsync of a new segment file).
LIGHTHOUSE_ONLY = frozenset({"group_fdatasync_eio_once", "segment_fsync_eio_once"})
RESUME_ACKS = 10


def run_io_errors(adapter: AdapterSpec, scenario: str, root: Path, seed: int, *, target: str | None = None
                  ) -> CampaignResult:
    """One :data:`IO_SCENARIOS` entry against files whose path contains ``target`` (default: the data directory)."""
    result = CampaignResult(Tally(f"io_{scenario}"[:24], adapter.name))
    data_dir = root / "data"
    spec = WorkloadSpec(adapter, str(data_dir), str(root / "journal"), seed=seed, clients=3,
                        phases=(Phase(name="faulty", ops_per_client=60),
                                Phase(name="after", seconds=20.0, until_acks=RESUME_ACKS)))
    Path(spec.journal_dir).mkdir(parents=True, exist_ok=True)
    with IoFault(target or str(data_dir), **IO_SCENARIOS[scenario]) as fault:
        with ChildProcess.python(run_incarnation, (spec, 0), env=fault.child_env()) as child:
            outcome = child.outcome(timeout=120.0)
    record = fault.record
    if record is None:
        result.failures.append("the I/O shim left no record")
        return result
    result.fault(record.kind, record.proven, record.detail, (record.t_start, record.t_end))
    result.timeline.fault(record)
    result.tally.case(record.proven)
    worker = outcome.value
    if outcome.returncode != 0 or not worker or not worker["opened"]:
        result.problem(f"worker failed ({outcome.returncode}): {outcome.error or worker}", "recovers")
        return result
    endless = "times" not in IO_SCENARIOS[scenario]  # short writes go on to the end of the run
    judge_phased_worker(result, spec, worker, resume_acks=RESUME_ACKS, require_voids=True,
                        what="the faulty phase, with every write still cut short" if endless
                        else "the injections stopped")
    op = IO_SCENARIOS[scenario]["op"]
    aimed = set(op) if isinstance(op, tuple) else {op}
    hit = set(record.evidence.get("by_op", {}))
    if not hit <= aimed:
        result.problem(f"aimed at {sorted(aimed)}, the shim hit {sorted(hit)}")
    result.parameters.update(injections=record.evidence.get("injections"), refused=worker["phases"][0]["errors"],
                             acked_after=worker["phases"][-1]["ok"])
    if not record.proven and record.evidence.get("injection_point_reached") is False:
        # The shim counts only calls on files matching the target: a target that names no file the store has
        # would count zero too, and must not pass as "this configuration never makes such a call".
        if _names_a_file(data_dir, target or str(data_dir)):
            result.not_applicable = _never_reached(adapter, scenario, target or str(data_dir), record.evidence)
        else:
            result.problem(f"the I/O shim's target {target!r} matches no file under {data_dir}: nothing was aimed at")
    return result


def _names_a_file(data_dir: Path, target: str) -> bool:
    """The shim matches a call when the file's path contains ``target``: does any file of the store's?"""
    return any(target in str(path.resolve()) for path in data_dir.rglob("*") if path.is_file())


def only_writes_never_resumed(result: CampaignResult) -> bool:
    """The run's one failing check is that the after phase took no writes: no loss, no phantom, every refusal typed."""
    return (result.parameters.get("acked_after", RESUME_ACKS) < RESUME_ACKS and len(result.failures) == 1
            and set(result.tally.violations) == {"recovers"})


def _never_reached(adapter: AdapterSpec, scenario: str, target: str, evidence: dict[str, Any]) -> str:
    """The skip reason: how many aimed calls the configuration made, against how many the scenario lets through."""
    settings = IO_SCENARIOS[scenario]
    ops = settings["op"] if isinstance(settings["op"], tuple) else (settings["op"],)
    calls = evidence.get("calls_seen") or {}
    made = " and ".join(f"{calls.get(op, 0)} {op}" for op in ops)
    if "after_bytes" in settings:
        needs = f"fails writes past the first {settings['after_bytes']} bytes (it wrote {calls.get('bytes', 0)})"
    else:
        needs = f"lets the first {settings.get('after_calls', 0)} calls of each through before failing one"
    return (f"{adapter.name} made {made} calls on *{target}* in the whole run (open to close), and this "
            f"scenario {needs}: the fault cannot be injected into this configuration")
