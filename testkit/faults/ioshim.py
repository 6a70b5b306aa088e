"""Targeted I/O errors for one file in a child: the LD_PRELOAD shim in ``iofault_shim.c``.

The shim is compiled with gcc on first use into a cache directory keyed by the source's hash, so
editing the C file rebuilds it and parallel sessions share one build. The shim appends a line to
a side log at each injection: :meth:`IoFault.prove` reads it, so a test can show the store really
met the error before judging how it coped. Each process under the shim also reports, at its normal
exit, how many matching calls it made: a fault that was never injected because the store never made
the call it waits for (a configuration that does not sync) is then told apart from a shim that missed.
"""

from __future__ import annotations

import errno as errno_module
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from testkit.faults._system import make_private_dir
from testkit.faults.errors import CommandFailed, InvalidFaultSpec, MechanismUnavailable
from testkit.faults.records import FaultClock, FaultRecord

__all__ = [
    "IO_OPS",
    "SYNC_OPS",
    "WRITE_OPS",
    "Injection",
    "IoFault",
    "build_shim",
    "cache_dir",
]

SHIM_SOURCE = Path(__file__).with_name("iofault_shim.c")
WRITE_OPS: tuple[str, ...] = ("write", "pwrite", "writev")
SYNC_OPS: tuple[str, ...] = ("fsync", "fdatasync")
IO_OPS: tuple[str, ...] = WRITE_OPS + SYNC_OPS


def cache_dir() -> Path:
    """``$TESTKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/testkit``, else ``~/.cache/testkit``."""
    explicit = os.environ.get("TESTKIT_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "testkit"


def build_shim(directory: str | os.PathLike[str] | None = None) -> Path:
    """Compile the shim once per source version; return the path of the shared object.

    The build goes to a temporary name and is renamed into place, so concurrent builders never
    load a half-written library.
    """
    source = SHIM_SOURCE.read_bytes()
    digest = hashlib.sha256(source).hexdigest()[:16]
    target_dir = Path(directory) if directory is not None else cache_dir()
    target = target_dir / f"iofault_shim-{digest}.so"
    if target.exists():
        return target
    compiler = shutil.which("gcc")
    if compiler is None:
        raise MechanismUnavailable("gcc is not installed: cannot build the LD_PRELOAD shim")
    target_dir.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(prefix=".iofault_shim-", suffix=".so", dir=target_dir)
    os.close(fd)
    argv = [
        compiler,
        "-shared",
        "-fPIC",
        "-O2",
        "-Wall",
        "-Wextra",
        "-o",
        partial,
        str(SHIM_SOURCE),
        "-ldl",
        "-lpthread",
    ]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
        if done.returncode != 0:
            raise CommandFailed(argv, done.returncode, done.stderr)
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return target


@dataclass(frozen=True, slots=True)
class Injection:
    """One line of the shim's log: a call it failed or shortened."""

    pid: int
    op: str
    fd: int
    action: Literal["error", "short"]
    requested: int
    returned: int
    call_index: int
    path: str

    @classmethod
    def parse(cls, line: str) -> Injection:
        pid, op, fd, action, requested, returned, call, path = line.rstrip("\n").split("\t", 7)
        if action not in ("error", "short"):
            raise ValueError(f"unexpected shim log action {action!r}")
        return cls(int(pid), op, int(fd), action, int(requested), int(returned), int(call), path)  # type: ignore[arg-type]


def _errno_number(value: str | int) -> int:
    if isinstance(value, int):
        return value
    number = getattr(errno_module, value.upper(), None)
    if not isinstance(number, int):
        raise InvalidFaultSpec(f"unknown errno name {value!r}")
    return number


class IoFault:
    """Fail (or shorten) chosen I/O calls on files whose path contains ``path_substring``.

    ``with IoFault("segment-", op="fsync", errno="EIO", after_calls=2) as fault:`` then start the
    child with ``env=fault.child_env()``; after it ran, ``fault.prove()`` (also set as
    ``fault.record`` on exit) says whether, where and how often the shim injected.

    - ``op``: one name or several from :data:`IO_OPS` (``pwrite`` covers pwrite64).
    - ``after_calls``: matching calls *of each op* let through first (every op counts its own calls,
      so ``op="fdatasync"`` aims at a group's sync and ``op="fsync"`` at a new file's, never at
      whichever comes first); ``after_bytes``: bytes of matching writes
      let through first, the crossing write is cut short at the boundary (takes precedence over
      ``after_calls`` for writes); ``times``: stop injecting after that many (None: never stop).
    - ``mode="short"``: writes return about half the requested count instead of failing.
    """

    def __init__(
        self,
        path_substring: str,
        op: str | Sequence[str] = "fsync",
        errno: str | int = "EIO",
        *,
        after_calls: int = 0,
        after_bytes: int | None = None,
        times: int | None = None,
        mode: Literal["error", "short"] = "error",
    ) -> None:
        ops = (op,) if isinstance(op, str) else tuple(op)
        unknown = [name for name in ops if name not in IO_OPS]
        if not path_substring:
            raise InvalidFaultSpec("path_substring must not be empty (it would hit every file)")
        if not ops or unknown:
            raise InvalidFaultSpec(f"op must be among {IO_OPS}, got {ops}")
        if mode not in ("error", "short"):
            raise InvalidFaultSpec(f"mode must be 'error' or 'short', got {mode!r}")
        if mode == "short" and not set(ops) & set(WRITE_OPS):
            raise InvalidFaultSpec("mode='short' only applies to write ops")
        if after_calls < 0 or (after_bytes is not None and after_bytes < 0) or (times is not None and times < 1):
            raise InvalidFaultSpec("after_calls and after_bytes must be >= 0, times >= 1")
        self.path_substring = path_substring
        self.ops = ops
        self.errno = _errno_number(errno)
        self.after_calls = after_calls
        self.after_bytes = after_bytes
        self.times = times
        self.mode = mode
        self.record: FaultRecord | None = None
        self._workdir: Path | None = None
        self._shim: Path | None = None
        self._clock = FaultClock()

    @property
    def log_path(self) -> Path:
        if self._workdir is None:
            raise RuntimeError("IoFault is not entered")
        return self._workdir / "injections.log"

    @property
    def calls_log_path(self) -> Path:
        if self._workdir is None:
            raise RuntimeError("IoFault is not entered")
        return self._workdir / "calls.log"

    @property
    def env(self) -> dict[str, str]:
        """Only the variables the shim needs (see :meth:`child_env` for a full environment)."""
        if self._shim is None:
            raise RuntimeError("IoFault is not entered")
        return {
            "LD_PRELOAD": str(self._shim),
            "TESTKIT_IOFAULT_PATH": self.path_substring,
            "TESTKIT_IOFAULT_OPS": ",".join(self.ops),
            "TESTKIT_IOFAULT_ERRNO": str(self.errno),
            "TESTKIT_IOFAULT_MODE": self.mode,
            "TESTKIT_IOFAULT_AFTER_CALLS": str(self.after_calls),
            "TESTKIT_IOFAULT_AFTER_BYTES": str(-1 if self.after_bytes is None else self.after_bytes),
            "TESTKIT_IOFAULT_TIMES": str(self.times or 0),
            "TESTKIT_IOFAULT_LOG": str(self.log_path),
            "TESTKIT_IOFAULT_CALLS_LOG": str(self.calls_log_path),
        }

    def child_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """``base`` (default: our environment) plus the shim, keeping any existing LD_PRELOAD."""
        env = dict(os.environ if base is None else base)
        shim_env = self.env
        if env.get("LD_PRELOAD"):
            shim_env["LD_PRELOAD"] = f"{shim_env['LD_PRELOAD']}:{env['LD_PRELOAD']}"
        env.update(shim_env)
        return env

    def injections(self) -> list[Injection]:
        try:
            text = self.log_path.read_text()
        except FileNotFoundError:
            return []
        return [Injection.parse(line) for line in text.splitlines() if line]

    def injections_by_op(self) -> dict[str, int]:
        """How many injections hit each op: the proof of *which* call a fault hit."""
        counts: dict[str, int] = {}
        for injection in self.injections():
            counts[injection.op] = counts.get(injection.op, 0) + 1
        return counts

    def calls_seen(self) -> dict[str, int] | None:
        """Matching calls per op and ``bytes`` of matching writes, summed over every process that exited
        normally under the shim; None when none did (killed or ``_exit``: nothing is known)."""
        try:
            lines = self.calls_log_path.read_text().splitlines()
        except FileNotFoundError:
            return None
        totals: dict[str, int] = {}
        for line in filter(None, lines):
            for field in line.split("\t")[1:]:
                name, _, count = field.partition("=")
                totals[name] = totals.get(name, 0) + int(count)
        return totals or None

    def injection_point_reached(self, calls: Mapping[str, int] | None) -> bool | None:
        """Whether the processes made the call the fault waits for (a matching call past ``after_calls``, a
        write past ``after_bytes``); None when no process reported."""
        if calls is None:
            return None
        for op in self.ops:
            if op in WRITE_OPS and self.after_bytes is not None:
                if calls.get("bytes", 0) > self.after_bytes:
                    return True
            elif calls.get(op, 0) > self.after_calls:
                return True
        return False

    def prove(self) -> FaultRecord:
        """Proven when the shim logged at least one injection."""
        found = self.injections()
        calls = self.calls_seen()
        errno_name = errno_module.errorcode.get(self.errno, str(self.errno))
        summary = ", ".join(sorted({f"{i.op}:{i.action}" for i in found})) or "none"
        return self._clock.record(
            "io_error" if self.mode == "error" else "short_write",
            bool(found),
            f"{len(found)} injections ({summary}) on *{self.path_substring}* with {errno_name}",
            injections=len(found),
            by_op=self.injections_by_op(),
            paths=sorted({i.path for i in found}),
            ops=list(self.ops),
            errno=self.errno,
            mode=self.mode,
            calls_seen=calls,
            injection_point_reached=self.injection_point_reached(calls),
        )

    def __enter__(self) -> IoFault:
        self._shim = build_shim()
        self._workdir = make_private_dir("iofault")
        self.log_path.touch()
        self._clock = FaultClock()
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.record = self.prove()
        finally:
            if self._workdir is not None:
                shutil.rmtree(self._workdir, ignore_errors=True)
                self._workdir = None
