"""Resource exhaustion in a child: too few file descriptors, too little memory, files capped in size.

Limits are lowered only inside a child process: a process cannot raise a lowered hard limit
again (no CAP_SYS_RESOURCE here), so doing it in the test runner would cripple the whole session.
Right after lowering them the child proves each one bites (EMFILE, MemoryError, EFBIG) with a
self-probe that releases what it took, then runs the target, and reports both.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from testkit.faults import _child_main
from testkit.faults.errors import FaultError, InvalidFaultSpec
from testkit.faults.process import ChildOutcome, ChildProcess
from testkit.faults.records import FaultClock, FaultRecord

__all__ = ["LimitedRun", "Limits", "limit_records", "pressure", "run_limited", "start_limited"]

_CHILD_MARKER = "TESTKIT_FAULT_CHILD_PID"
_KIND = {"RLIMIT_NOFILE": "rlimit_nofile", "RLIMIT_AS": "rlimit_as", "RLIMIT_FSIZE": "rlimit_fsize"}


@dataclass(frozen=True, slots=True)
class Limits:
    """Which limits to lower (None leaves one alone). Sizes are bytes."""

    nofile: int | None = None
    address_space: int | None = None
    file_size: int | None = None

    def as_rlimits(self) -> dict[str, int]:
        chosen = {
            "RLIMIT_NOFILE": self.nofile,
            "RLIMIT_AS": self.address_space,
            "RLIMIT_FSIZE": self.file_size,
        }
        out = {name: value for name, value in chosen.items() if value is not None}
        if not out:
            raise InvalidFaultSpec("Limits needs at least one of nofile, address_space, file_size")
        for name, value in out.items():
            hard = resource.getrlimit(getattr(resource, name))[1]
            if value < 1:
                raise InvalidFaultSpec(f"{name} must be >= 1, got {value}")
            if hard != resource.RLIM_INFINITY and value > hard:
                raise InvalidFaultSpec(f"{name}={value} is above the hard limit {hard}: it can only be lowered")
        return out


@dataclass(frozen=True, slots=True)
class LimitedRun:
    outcome: ChildOutcome
    records: tuple[FaultRecord, ...]

    @property
    def proven(self) -> bool:
        return bool(self.records) and all(r.proven for r in self.records)


def _describe(name: str, report: Mapping[str, Any]) -> str:
    observed = report.get("errno")
    what = (
        "MemoryError"
        if name == "RLIMIT_AS" and observed == errno.ENOMEM
        else errno.errorcode.get(observed or 0, "nothing")
    )
    extra = f" after {report['headroom']} more descriptors" if "headroom" in report else ""
    return f"{name} {tuple(report.get('applied', ()))}: self-probe observed {what}{extra}"


def limit_records(outcome: ChildOutcome, clock: FaultClock | None = None) -> tuple[FaultRecord, ...]:
    """One record per lowered limit, proven by what the child's self-probe observed."""
    clock = clock or FaultClock()
    return tuple(
        clock.record(
            _KIND.get(name, name.lower()),
            bool(report.get("proven")),
            _describe(name, report),
            **{k: v for k, v in report.items() if k != "proven"},
        )
        for name, report in outcome.limits.items()
    )


def start_limited(
    target: Callable[..., Any] | Sequence[str],
    limits: Limits,
    *,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> ChildProcess:
    """Start a callable or an argv under ``limits`` and return at once (for long-running children)."""
    rlimits = limits.as_rlimits()
    if callable(target):
        return ChildProcess.python(target, args, kwargs, env=env, cwd=cwd, rlimits=rlimits)
    if args or kwargs:
        raise InvalidFaultSpec("args/kwargs only apply to a callable target")
    return ChildProcess.command(list(target), env=env, cwd=cwd, rlimits=rlimits)


def run_limited(
    target: Callable[..., Any] | Sequence[str],
    limits: Limits,
    *,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float = 60.0,
) -> LimitedRun:
    """Run the target to completion under ``limits``; return its outcome and one record per limit."""
    clock = FaultClock()
    with start_limited(target, limits, args=args, kwargs=kwargs, env=env, cwd=cwd) as child:
        outcome = child.outcome(timeout)
    return LimitedRun(outcome, limit_records(outcome, clock))


@contextlib.contextmanager
def pressure(limits: Limits, *, scratch_dir: str | None = None) -> Iterator[tuple[FaultRecord, ...]]:
    """Inside a testkit child: lower the *soft* limits for the body, then give them back.

    Lets a store in a child meet exhaustion and then show that it recovers once the pressure goes.
    Refuses to run anywhere but in a process started by :class:`ChildProcess` (or its descendants).
    """
    if _CHILD_MARKER not in os.environ:
        raise FaultError("pressure() lowers limits in this process: use it only inside a testkit child")
    rlimits = limits.as_rlimits()
    scratch = scratch_dir or tempfile.gettempdir()
    clock = FaultClock()
    saved = {name: resource.getrlimit(getattr(resource, name)) for name in rlimits}
    try:
        reports = {}
        for name, value in rlimits.items():
            resource.setrlimit(getattr(resource, name), (value, saved[name][1]))
            reports[name] = {"applied": resource.getrlimit(getattr(resource, name))}
        for name, value in rlimits.items():
            reports[name].update(_child_main.PROOFS[name](value, scratch))
        outcome = ChildOutcome(returncode=0, limits=reports)
        yield limit_records(outcome, clock)
    finally:
        for name, limit in saved.items():
            resource.setrlimit(getattr(resource, name), limit)
