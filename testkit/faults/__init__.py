"""Store-agnostic fault injectors that prove each fault really happened.

Every injector either returns a :class:`FaultRecord` or is a context manager exposing one, and
``record.proven`` is set only from observed evidence (a wait status, an errno, changed bytes, a
line in an injection log). Everything mounted or spawned is cleaned up on exit, even on failure.
Probe a mechanism with :mod:`testkit.faults.probe` before relying on it.

:mod:`testkit.faults.workload` is the crash-cycle engine the chaos campaigns (:mod:`testkit.chaos`)
run on: a :class:`WorkloadSpec` (adapter, data and journal directories, seed, :class:`Phase` steps)
drives agent traffic in forked workers of a pre-imported :class:`WorkloadServer` (``spawn``,
``wait_opened``, ``kill9``, ``freeze``, ``join``), every write journalled so it survives the
worker's death; :func:`load_history` merges the journals and :func:`recover` reopens the store.
"""

from testkit.faults.corruption import (
    CorruptionCase,
    CorruptionKind,
    CorruptionPlan,
    Target,
    append_garbage,
    duplicate_range,
    flip_bit,
    torn_tail,
    truncate_to,
    zero_range,
)
from testkit.faults.disk import (
    Ballast,
    FakeDiskFull,
    SmallTmpfs,
    disk_full,
    exhaust_inodes,
    fill,
    free_bytes,
    free_space,
    remount_readonly,
)
from testkit.faults.errors import (
    CommandFailed,
    FaultError,
    FaultNotProven,
    InvalidFaultSpec,
    MechanismUnavailable,
    MountBusy,
    UnsafeTarget,
)
from testkit.faults.ioshim import IO_OPS, SYNC_OPS, WRITE_OPS, Injection, IoFault, build_shim
from testkit.faults.leaks import LeakedResources, OwnedResources, no_leaks
from testkit.faults.mounts import MountedFs
from testkit.faults.network import BackgroundFaultProxy, Direction, FaultProxy, LinkFaults, ProxyStats
from testkit.faults.powerloss import LoopExt4, cut_power
from testkit.faults.probe import Available, ProbeResult, Unavailable
from testkit.faults.process import (
    ChildError,
    ChildOutcome,
    ChildProcess,
    kill9,
    kill_at_random,
    pause,
    process_state,
)
from testkit.faults.records import FaultRecord
from testkit.faults.rlimits import LimitedRun, Limits, limit_records, pressure, run_limited, start_limited
from testkit.faults.strace_inject import StraceFault
from testkit.faults.workload import (
    Phase,
    Recovered,
    WorkloadServer,
    WorkloadSpec,
    load_history,
    recover,
    recover_async,
    run_incarnation,
)

__all__ = [
    "BackgroundFaultProxy",
    "Direction",
    "FaultProxy",
    "LinkFaults",
    "ProxyStats",
    "IO_OPS",
    "SYNC_OPS",
    "WRITE_OPS",
    "Available",
    "Ballast",
    "ChildError",
    "ChildOutcome",
    "ChildProcess",
    "CommandFailed",
    "CorruptionCase",
    "CorruptionKind",
    "CorruptionPlan",
    "FakeDiskFull",
    "FaultError",
    "FaultNotProven",
    "FaultRecord",
    "Injection",
    "InvalidFaultSpec",
    "IoFault",
    "LeakedResources",
    "LimitedRun",
    "Limits",
    "LoopExt4",
    "MechanismUnavailable",
    "MountBusy",
    "MountedFs",
    "OwnedResources",
    "Phase",
    "ProbeResult",
    "Recovered",
    "SmallTmpfs",
    "StraceFault",
    "Target",
    "Unavailable",
    "UnsafeTarget",
    "WorkloadServer",
    "WorkloadSpec",
    "append_garbage",
    "build_shim",
    "cut_power",
    "disk_full",
    "duplicate_range",
    "exhaust_inodes",
    "fill",
    "flip_bit",
    "free_bytes",
    "free_space",
    "kill9",
    "kill_at_random",
    "limit_records",
    "load_history",
    "no_leaks",
    "pause",
    "pressure",
    "process_state",
    "recover",
    "recover_async",
    "remount_readonly",
    "run_limited",
    "run_incarnation",
    "start_limited",
    "torn_tail",
    "truncate_to",
    "zero_range",
]
