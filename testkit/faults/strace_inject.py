"""Syscall fault injection with ``strace -e inject``: the alternative to the LD_PRELOAD shim.

It sees raw syscalls (also those libc makes internally, and statically linked programs) and with
``path`` it only hits syscalls on that file, but it is slower to start (ptrace) and cannot write
short. The child runs under strace as a prefix: pass :attr:`StraceFault.wrapper` to
:class:`~testkit.faults.process.ChildProcess` (``wrapper=``); strace's log, with ``(INJECTED)``
on each hit, is the proof.
"""

from __future__ import annotations

import errno as errno_module
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

from testkit.faults._system import make_private_dir
from testkit.faults.errors import InvalidFaultSpec, MechanismUnavailable
from testkit.faults.records import FaultClock, FaultRecord

__all__ = ["StraceFault"]

_SYSCALL_NAME = re.compile(r"^[a-z0-9_]+$")
_WHEN = re.compile(r"^\d+(\+\d*)?(\.\.\d+)?$")


class StraceFault:
    """Fail ``syscall`` with ``error`` in a child run under strace.

    ``when`` uses strace's syntax: ``"3"`` (the 3rd call only), ``"3+"`` (3rd onwards), ``"2+2"``
    (every 2nd from the 2nd); ``path`` limits injection to syscalls on that file (strace ``-P``).
    """

    def __init__(
        self,
        syscall: str | Sequence[str],
        error: str = "EIO",
        *,
        when: str | None = None,
        path: str | None = None,
    ) -> None:
        names = (syscall,) if isinstance(syscall, str) else tuple(syscall)
        if not names or not all(_SYSCALL_NAME.match(name) for name in names):
            raise InvalidFaultSpec(f"bad syscall names {names!r}")
        if not isinstance(getattr(errno_module, error, None), int):
            raise InvalidFaultSpec(f"unknown errno name {error!r}")
        if when is not None and not _WHEN.match(when):
            raise InvalidFaultSpec(f"bad strace 'when' expression {when!r}")
        self.syscalls = names
        self.error = error
        self.when = when
        self.path = path
        self.record: FaultRecord | None = None
        self._workdir: Path | None = None
        self._clock = FaultClock()

    @property
    def log_path(self) -> Path:
        if self._workdir is None:
            raise RuntimeError("StraceFault is not entered")
        return self._workdir / "strace.log"

    @property
    def wrapper(self) -> list[str]:
        """The argv prefix that runs a command under strace with the injection."""
        strace = shutil.which("strace")
        if strace is None:
            raise MechanismUnavailable("strace is not installed")
        names = ",".join(self.syscalls)
        inject = f"inject={names}:error={self.error}" + (f":when={self.when}" if self.when else "")
        argv = [
            strace,
            "-f",
            "--seccomp-bpf",
            "-qq",
            "-e",
            "signal=none",
            "-o",
            str(self.log_path),
            "-e",
            f"trace={names}",
            "-e",
            inject,
        ]
        if self.path is not None:
            argv += ["-P", self.path]
        return [*argv, "--"]

    def injected_lines(self) -> list[str]:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return []
        return [line for line in text.splitlines() if line.endswith("(INJECTED)")]

    def prove(self) -> FaultRecord:
        """Proven when strace logged at least one ``(INJECTED)`` syscall."""
        lines = self.injected_lines()
        return self._clock.record(
            "strace_inject",
            bool(lines),
            f"{len(lines)} injected {'/'.join(self.syscalls)} -> {self.error}"
            + (f" on {self.path}" if self.path else ""),
            injections=len(lines),
            sample=lines[:5],
        )

    def __enter__(self) -> StraceFault:
        self._workdir = make_private_dir("strace")
        self._clock = FaultClock()
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.record = self.prove()
        finally:
            if self._workdir is not None:
                shutil.rmtree(self._workdir, ignore_errors=True)
                self._workdir = None
