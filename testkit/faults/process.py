"""Process faults: run the system under test in a child, SIGKILL it, pause it.

Each child gets its own session (``start_new_session``) so its whole process group can be
signalled at once, and the group is always signalled *before* the leader is reaped: while the
leader is a zombie its PID (= the group id) cannot be reused, so we only ever signal processes we
started.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pickle
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testkit.faults._system import make_private_dir
from testkit.faults.errors import FaultNotProven, InvalidFaultSpec
from testkit.faults.records import FaultClock, FaultRecord

__all__ = [
    "ChildError",
    "ChildOutcome",
    "ChildProcess",
    "kill9",
    "kill_at_random",
    "pause",
    "process_state",
]

_BOOTSTRAP = Path(__file__).with_name("_child_main.py")
_STATE_DEADLINE_S = 5.0


@dataclass(frozen=True, slots=True)
class ChildError:
    """An exception raised inside a child, reported back by value (exceptions do not cross processes)."""

    type_name: str
    module: str
    errno: int | None
    message: str
    traceback: str


@dataclass(frozen=True, slots=True)
class ChildOutcome:
    """How a child ended: its exit status and, for a Python callable, its return value or error."""

    returncode: int
    value: Any = None
    error: ChildError | None = None
    limits: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def killed_by(self) -> int | None:
        """The signal number that ended the child, or None when it exited by itself."""
        return -self.returncode if self.returncode < 0 else None


def _child_pythonpath(extra: str | None) -> str:
    # The child must import the same modules as we do (the callable's module, testkit itself).
    paths = [os.getcwd() if p == "" else p for p in sys.path]
    if extra:
        paths.insert(0, extra)
    return os.pathsep.join(paths)


class ChildProcess:
    """A child process in its own session, with captured output and a reported outcome.

    Build one with :meth:`command` or :meth:`python`; use it as a context manager so that it and
    its process group are SIGKILLed and reaped even when the test fails.
    """

    def __init__(self, popen: subprocess.Popen[bytes], workdir: Path, *, reports_outcome: bool) -> None:
        self._popen = popen
        self._workdir = workdir
        self._reports_outcome = reports_outcome
        self._returncode: int | None = None

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def command(
        cls,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        wrapper: Sequence[str] = (),
        rlimits: Mapping[str, int] | None = None,
        prove_limits: bool = True,
    ) -> ChildProcess:
        """Start ``argv``; with ``rlimits`` a tiny bootstrap lowers them in the child, then execs."""
        if not argv:
            raise InvalidFaultSpec("argv must not be empty")
        if not rlimits:
            return cls._start(list(wrapper) + list(argv), env, cwd, spec=None)
        spec = {"mode": "exec", "argv": list(argv), "limits": dict(rlimits), "prove_limits": prove_limits}
        return cls._start(list(wrapper), env, cwd, spec=spec)

    @classmethod
    def python(
        cls,
        func: Callable[..., Any],
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        wrapper: Sequence[str] = (),
        rlimits: Mapping[str, int] | None = None,
        prove_limits: bool = True,
    ) -> ChildProcess:
        """Run ``func(*args, **kwargs)`` in a fresh interpreter (pickled by reference, like spawn)."""
        if getattr(func, "__module__", None) == "__main__":
            raise InvalidFaultSpec(
                f"{func!r} is defined in __main__, which the child cannot import: move it to a module"
            )
        try:
            payload = pickle.dumps((func, tuple(args), dict(kwargs or {})))
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            raise InvalidFaultSpec(
                f"{func!r} cannot run in a child: it must be a module-level function ({exc})"
            ) from exc
        spec = {
            "mode": "python",
            "payload": payload,
            "limits": dict(rlimits or {}),
            "prove_limits": prove_limits,
        }
        return cls._start(list(wrapper), env, cwd, spec=spec)

    @classmethod
    def _start(
        cls,
        argv: list[str],
        env: Mapping[str, str] | None,
        cwd: str | os.PathLike[str] | None,
        *,
        spec: dict[str, Any] | None,
    ) -> ChildProcess:
        workdir = make_private_dir("child")
        child_env = dict(os.environ if env is None else env)
        if spec is not None:
            spec["result_path"] = str(workdir / "result.pickle")
            spec["scratch_dir"] = str(workdir)
            (workdir / "spec.pickle").write_bytes(pickle.dumps(spec))
            argv = [*argv, sys.executable, str(_BOOTSTRAP), str(workdir / "spec.pickle")]
            child_env["PYTHONPATH"] = _child_pythonpath(child_env.get("PYTHONPATH"))
        try:
            with open(workdir / "stdout", "wb") as out, open(workdir / "stderr", "wb") as err:
                popen = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    env=child_env,
                    cwd=cwd,
                    start_new_session=True,
                )
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        return cls(popen, workdir, reports_outcome=spec is not None)

    # -- observation --------------------------------------------------------------------------
    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        return self._returncode

    def poll(self) -> int | None:
        if self._returncode is None and self._exited_unreaped():
            self._reap()
        return self._returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the leader to exit, SIGKILL what is left of its group, reap, return the status."""
        if self._returncode is not None:
            return self._returncode
        deadline = None if timeout is None else time.monotonic() + timeout
        pause_s = 0.0005
        while not self._exited_unreaped():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise subprocess.TimeoutExpired(self._popen.args, timeout or 0.0)
            time.sleep(pause_s if deadline is None else min(pause_s, deadline - now))
            pause_s = min(pause_s * 2, 0.02)
        return self._reap()

    def outcome(self, timeout: float | None = None) -> ChildOutcome:
        """Wait, then return the exit status with the value or error the child reported."""
        returncode = self.wait(timeout)
        report: dict[str, Any] = {}
        result_path = self._workdir / "result.pickle"
        if self._reports_outcome and result_path.exists() and result_path.stat().st_size:
            report = pickle.loads(result_path.read_bytes())
        error = report.get("error")
        return ChildOutcome(
            returncode=returncode,
            value=report.get("value"),
            error=ChildError(**error) if error else None,
            limits=report.get("limits", {}),
        )

    def stdout_text(self) -> str:
        return (self._workdir / "stdout").read_text(errors="replace")

    def stderr_text(self) -> str:
        return (self._workdir / "stderr").read_text(errors="replace")

    # -- signals ------------------------------------------------------------------------------
    def signal_group(self, signum: int) -> None:
        """Send ``signum`` to the child's whole process group (only while the leader is unreaped)."""
        if self._returncode is not None:
            return  # reaped: the group id may belong to someone else now
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._popen.pid, signum)

    def close(self) -> None:
        """SIGKILL the group if still running, reap, delete the captured output."""
        try:
            if self._returncode is None:
                self.signal_group(signal.SIGKILL)
                self.wait(timeout=_STATE_DEADLINE_S)
        finally:
            shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> ChildProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ChildProcess(pid={self.pid}, returncode={self._returncode})"

    def _exited_unreaped(self) -> bool:
        try:
            info = os.waitid(os.P_PID, self._popen.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        return info is not None

    def _reap(self) -> int:
        # Leftover group members (grandchildren) die with the leader; the zombie pins the group id.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._popen.pid, signal.SIGKILL)
        self._returncode = self._popen.wait()
        return self._returncode


Killable = ChildProcess | subprocess.Popen[Any]


def _send(proc: Killable, signum: int) -> None:
    if isinstance(proc, ChildProcess):
        proc.signal_group(signum)
    elif proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)


def kill9(proc: Killable, *, timeout: float = _STATE_DEADLINE_S) -> FaultRecord:
    """SIGKILL the child (its whole group for a :class:`ChildProcess`) and prove it by wait status.

    ``proven`` is False when the child had already exited by itself: a race the caller must see.
    """
    clock = FaultClock()
    if proc.returncode is not None:
        return clock.record(
            "sigkill",
            False,
            f"pid {proc.pid} already exited ({proc.returncode})",
            pid=proc.pid,
            returncode=proc.returncode,
        )
    _send(proc, signal.SIGKILL)
    returncode = proc.wait(timeout=timeout)
    proven = returncode == -signal.SIGKILL
    detail = (
        f"pid {proc.pid} ended by SIGKILL"
        if proven
        else f"pid {proc.pid} exited with {returncode} before SIGKILL landed"
    )
    return clock.record("sigkill", proven, detail, pid=proc.pid, returncode=returncode)


def kill_at_random(
    proc: Killable, rng: random.Random, window: tuple[float, float], *, timeout: float = _STATE_DEADLINE_S
) -> FaultRecord:
    """SIGKILL after a delay drawn from ``window`` (seconds) with the caller's seeded ``rng``."""
    low, high = window
    if not 0 <= low <= high:
        raise InvalidFaultSpec(f"window must satisfy 0 <= low <= high, got {window}")
    delay = rng.uniform(low, high)
    clock = FaultClock()
    try:
        returncode = proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        record = kill9(proc, timeout=timeout)
        return dataclasses.replace(
            record,
            detail=f"{record.detail} after {delay:.4f}s",
            t_start=clock.t_start,
            mono_start=clock.mono_start,
            evidence={**record.evidence, "delay_s": delay},
        )
    return clock.record(
        "sigkill",
        False,
        f"pid {proc.pid} exited with {returncode} before the kill planned at {delay:.4f}s",
        pid=proc.pid,
        returncode=returncode,
        delay_s=delay,
    )


def process_state(pid: int) -> str:
    """The one-letter state from /proc/PID/stat ('R', 'S', 'T' stopped, 'Z' zombie...)."""
    with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
        stat = fh.read()
    return stat[stat.rindex(")") + 2]


def _await_state(pid: int, wanted: Callable[[str], bool], deadline_s: float) -> str:
    end = time.monotonic() + deadline_s
    state = process_state(pid)
    while not wanted(state) and time.monotonic() < end:
        time.sleep(0.0005)
        state = process_state(pid)
    return state


@contextlib.contextmanager
def pause(proc: Killable, *, deadline_s: float = _STATE_DEADLINE_S) -> Iterator[FaultRecord]:
    """SIGSTOP the child for the body of the ``with``; proven by state 'T' in /proc/PID/stat.

    SIGCONT is always sent on exit; raises :class:`FaultNotProven` when the stop is not observed.
    """
    clock = FaultClock()
    _send(proc, signal.SIGSTOP)
    try:
        state = _await_state(proc.pid, lambda s: s in "tT", deadline_s)
        record = clock.record(
            "sigstop", state in "tT", f"pid {proc.pid} state {state!r} after SIGSTOP", pid=proc.pid, state=state
        )
        record.require()
        yield record
    finally:
        _send(proc, signal.SIGCONT)
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            state = _await_state(proc.pid, lambda s: s not in "tT", deadline_s)
            if state in "tT":
                raise FaultNotProven(clock.record("sigcont", False, f"pid {proc.pid} still stopped"))
