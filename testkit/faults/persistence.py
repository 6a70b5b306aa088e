"""A POSIX crash model built from a syscall trace: what a crash may leave when only fsync is trusted.

A real power cut on ext4 is kinder than POSIX: ext4's fsync of a new file also commits its directory
entry, so a store that forgets to fsync the directory after creating a file survives every cut on
this machine and breaks on other filesystems. ALICE, LazyFS and RocksDB's FaultInjectionTestFS catch
such bugs with a persistence model instead; this module is a small one:

* a file's bytes are durable up to its size at its last completed ``fsync``/``fdatasync``; of the
  bytes appended after that a random prefix survives (a torn write), possibly none;
* a file created during the trace has a durable *name* only once its directory was fsynced after
  the creation; otherwise the file is gone after the crash;
* files that existed when the model started are durable as they are;
* a *failed* ``fsync``/``fdatasync`` makes nothing durable, and (fsyncgate: Linux marks the dirty pages
  clean after a failed writeback) the bytes it should have synced stay lost even if a later sync
  succeeds, until they are written again or truncated away: the crash state zeroes them.

:class:`SyscallTrace` runs a process tree under ``strace -f`` (its :attr:`~SyscallTrace.wrapper` goes
in front of a child's command) and :class:`PosixCrashModel` replays the trace's file-system calls
under one directory, then applies the crash state to the real files after the process was killed.
``SyscallTrace(inject=...)`` also fails chosen calls in the same strace run (``fdatasync:error=EIO:when=5``
fails the fifth fdatasync of every thread), and the model counts the failures it saw (``injected``).
``SyscallTrace(sync_delay_us=...)`` makes every sync take at least that long, as a disk's does: on tmpfs or
behind a write-back cache a sync returns at once, so a kill at a random moment almost never finds
unsynced bytes and the crash state proves nothing (:data:`DISK_SYNC_DELAY_US` is what the campaigns use).
Limits: unsynced overwrites inside the durable size are kept (a legal outcome, not the only one);
renames and unlinks are taken as immediately durable; memory-mapped writes are not seen.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from testkit.faults._system import make_private_dir
from testkit.faults.errors import InvalidFaultSpec, MechanismUnavailable
from testkit.faults.records import FaultClock, FaultRecord

__all__ = ["DISK_SYNC_DELAY_US", "TRACED_SYSCALLS", "PosixCrashModel", "SyscallTrace", "TracedCall", "TraceReader"]

TRACED_SYSCALLS: tuple[str, ...] = (
    "open", "openat", "creat", "write", "pwrite64", "writev", "pwritev", "pwritev2",
    "fsync", "fdatasync", "ftruncate", "truncate", "unlink", "unlinkat", "rename", "renameat", "renameat2",
    "mkdir", "mkdirat",
)

_LINE = re.compile(r"^(\d+)\s+(.*)$")
_RESUMED = re.compile(r"^<\.\.\. (\w+) resumed>(.*)$")
_CALL = re.compile(r"^(\w+)\((.*)\)\s+=\s+(-?\d+)(?:<(.*)>)?")
_FD = re.compile(r"^(\d+)<(.*?)>(?:,|$)")
_OPEN_PATH = re.compile(r'^(?:AT_FDCWD|\d+)(?:<[^>]*>)?, "((?:[^"\\]|\\.)*)", ([A-Z_|]+)')
_TAIL_INTS = re.compile(r"(\d+)(?:, (\d+))?$")
_INJECTED = "(INJECTED)"
_SYNCS = ("fsync", "fdatasync")
DISK_SYNC_DELAY_US = 2000  # an SSD's flush: a kill then lands between a write and its sync often enough to prove


class SyscallTrace:
    """``strace -f`` of a process tree into a log file; read it incrementally while the tree runs."""

    def __init__(self, syscalls: tuple[str, ...] = TRACED_SYSCALLS, *, inject: tuple[str, ...] = (),
                 sync_delay_us: int = 0) -> None:
        if not syscalls:
            raise InvalidFaultSpec("trace at least one syscall")
        if sync_delay_us < 0:
            raise InvalidFaultSpec(f"sync_delay_us must be >= 0, got {sync_delay_us}")
        for rule in inject:
            if rule.split(":", 1)[0] not in syscalls:
                raise InvalidFaultSpec(f"inject rule {rule!r} aims at a call that is not traced")
        self.syscalls = syscalls
        # strace keeps one inject rule per call: a call another rule already aims at keeps that rule alone.
        aimed = {rule.split(":", 1)[0] for rule in inject}
        delays = tuple(f"{call}:delay_enter={sync_delay_us}" for call in _SYNCS
                       if sync_delay_us and call in syscalls and call not in aimed)
        self.inject = inject + delays
        self._dir: Path | None = None
        self._offset = 0

    @property
    def log_path(self) -> Path:
        if self._dir is None:
            raise RuntimeError("SyscallTrace is not entered")
        return self._dir / "strace.log"

    @property
    def wrapper(self) -> list[str]:
        """Put this in front of the traced command (``ChildProcess(..., wrapper=trace.wrapper)``)."""
        strace = shutil.which("strace")
        if strace is None:
            raise MechanismUnavailable("strace is not installed")
        injections = [arg for rule in self.inject for arg in ("-e", f"inject={rule}")]
        return [strace, "-f", "--seccomp-bpf", "-q", "-y", "-s", "0",
                "-e", f"trace={','.join(self.syscalls)}", *injections, "-o", str(self.log_path), "--"]

    def __enter__(self) -> SyscallTrace:
        if shutil.which("strace") is None:
            raise MechanismUnavailable("strace is not installed")
        self._dir = make_private_dir("strace")
        self.log_path.touch()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def mark(self) -> int:
        """The log position now: :meth:`lines` from here covers only what happens next."""
        self._offset = self.log_path.stat().st_size
        return self._offset

    def lines(self, since: int | None = None) -> list[str]:
        """Complete lines written since ``since`` (default: the last :meth:`mark`)."""
        with open(self.log_path, "rb") as fh:
            fh.seek(self._offset if since is None else since)
            data = fh.read()
        end = data.rfind(b"\n") + 1
        return data[:end].decode("utf-8", "replace").splitlines()

    def wait_for_death(self, pid: int, timeout: float = 10.0) -> bool:
        """Wait until strace logged ``pid``'s death, so the log holds every call it completed."""
        # strace pads the pid to five columns: "4242  +++ killed by SIGKILL +++".
        death = re.compile(rf"^{pid}\s+\+\+\+ (?:killed by|exited with)".encode(), re.MULTILINE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
            if death.search(data):
                return True
            time.sleep(0.001)
        return False


@dataclass(frozen=True, slots=True)
class TracedCall:
    """One completed call of an ``strace -f -y`` log: thread, name, raw arguments, result."""

    tid: int
    name: str
    args: str
    ret: int
    ret_path: str | None
    injected: bool

    def fd_path(self) -> str | None:
        """The path of the descriptor in the first argument (``-y`` prints it), if any."""
        match = _FD.match(self.args)
        return match.group(2).removesuffix(" (deleted)") if match else None

    def quoted_paths(self) -> list[str]:
        return re.findall(r'"((?:[^"\\]|\\.)*)"', self.args)


@dataclass
class TraceReader:
    """Turns log lines into completed calls, joining ``<unfinished ...>`` with ``<... resumed>`` per thread."""

    _pending: dict[int, str] = field(default_factory=dict)

    def calls(self, lines: list[str]) -> list[TracedCall]:
        out = []
        for raw in lines:
            match = _LINE.match(raw)
            if not match:
                continue
            tid, rest = int(match.group(1)), match.group(2)
            if rest.endswith("<unfinished ...>"):
                self._pending[tid] = rest[: -len("<unfinished ...>")].rstrip()
                continue
            resumed = _RESUMED.match(rest)
            if resumed:
                rest = self._pending.pop(tid, resumed.group(1) + "(") + resumed.group(2)
            call = _CALL.match(rest)
            if call:
                out.append(TracedCall(tid, call.group(1), call.group(2), int(call.group(3)), call.group(4),
                                      rest.endswith(_INJECTED)))
        return out


@dataclass
class _File:
    size: int
    durable: int
    created_at: int | None = None  # trace line of the creation, None for files older than the trace
    name_durable: bool = True
    poisoned: list[tuple[int, int]] = field(default_factory=list)  # [start, end) lost to a failed sync

    def rewritten(self, start: int, end: int) -> None:
        """Bytes written again are dirty (and in the page cache) again: no longer lost."""
        kept = []
        for lo, hi in self.poisoned:
            if hi <= start or lo >= end:
                kept.append((lo, hi))
                continue
            if lo < start:
                kept.append((lo, start))
            if hi > end:
                kept.append((end, hi))
        self.poisoned = kept

    def truncated(self, size: int) -> None:
        self.poisoned = [(lo, min(hi, size)) for lo, hi in self.poisoned if lo < size]


@dataclass
class PosixCrashModel:
    """Replays traced calls on files under ``root`` and applies what a crash may leave of them."""

    root: Path
    files: dict[str, _File] = field(default_factory=dict)
    dir_synced_at: dict[str, int] = field(default_factory=dict)
    _positions: dict[int, int] = field(default_factory=dict)
    _reader: TraceReader = field(default_factory=TraceReader)
    _line: int = 0
    injected: dict[str, int] = field(default_factory=dict)  # failed calls strace injected, by syscall

    def __post_init__(self) -> None:
        self.root = Path(os.path.realpath(self.root))
        for path in self.root.rglob("*"):
            if path.is_file():
                size = path.stat().st_size
                self.files[str(path)] = _File(size, size)

    def _ours(self, path: str) -> bool:
        return path == str(self.root) or path.startswith(str(self.root) + os.sep)

    def feed(self, lines: list[str]) -> None:
        for call in self._reader.calls(lines):
            self._line += 1
            if call.injected:
                self.injected[call.name] = self.injected.get(call.name, 0) + 1
            self._apply(call.name, call.args, call.ret, call.ret_path)

    def _apply(self, name: str, args: str, ret: int, ret_path: str | None) -> None:
        if ret < 0:
            self._failed(name, args)
            return
        if name in ("open", "openat", "creat"):
            self._opened(args, ret, ret_path, name == "creat")
            return
        fd_match = _FD.match(args)
        if name in ("unlink", "unlinkat", "rename", "renameat", "renameat2", "truncate"):
            for quoted in re.findall(r'"((?:[^"\\]|\\.)*)"', args):
                path = os.path.realpath(quoted) if os.path.isabs(quoted) else None
                if path and path in self.files and name != "truncate":
                    self.files.pop(path)  # taken as durable at once (see the module's limits)
            return
        if not fd_match:
            return
        fd, path = int(fd_match.group(1)), fd_match.group(2).removesuffix(" (deleted)")
        if not self._ours(path):
            return
        state = self.files.get(path)
        if name in ("fsync", "fdatasync"):
            if state is not None:
                state.durable = state.size
            elif os.path.isdir(path):
                self.dir_synced_at[path] = self._line
            return
        if state is None:
            return
        tail = _TAIL_INTS.search(args)
        if name == "ftruncate" and tail:
            state.size = int(tail.group(1))
            state.truncated(state.size)
        elif name in ("pwrite64", "pwritev", "pwritev2") and tail and tail.group(2) is not None:
            start = int(tail.group(2))
            state.size = max(state.size, start + ret)
            state.rewritten(start, start + ret)
        elif name in ("write", "writev"):
            position = self._positions.get(fd, state.size)
            state.size = max(state.size, position + ret)
            state.rewritten(position, position + ret)
            self._positions[fd] = position + ret

    def _failed(self, name: str, args: str) -> None:
        """A failed sync: what it should have made durable is lost (fsyncgate), see the module doc."""
        fd_match = _FD.match(args)
        if name not in ("fsync", "fdatasync") or not fd_match:
            return
        state = self.files.get(fd_match.group(2).removesuffix(" (deleted)"))
        if state is not None and state.size > state.durable:
            state.poisoned.append((state.durable, state.size))

    def _opened(self, args: str, fd: int, ret_path: str | None, creat: bool) -> None:
        match = _OPEN_PATH.match(args)
        path = ret_path.removesuffix(" (deleted)") if ret_path else None
        if path is None or not self._ours(path):
            return
        flags = match.group(2) if match else ("O_CREAT|O_TRUNC" if creat else "")
        state = self.files.get(path)
        if state is None and ("O_CREAT" in flags) and not os.path.isdir(path):
            self.files[path] = _File(0, 0, created_at=self._line, name_durable=False)
            state = self.files[path]
        if state is not None and "O_TRUNC" in flags:
            state.size = 0
        self._positions[fd] = state.size if (state is not None and "O_APPEND" in flags) else 0

    def crash(self, rng: random.Random) -> FaultRecord:
        """Make the files look like the crash state; proven when anything unsynced was dropped."""
        clock = FaultClock()
        removed: list[str] = []
        torn: dict[str, tuple[int, int]] = {}
        zeroed: dict[str, int] = {}
        for path, state in sorted(self.files.items()):
            if state.created_at is not None:
                synced = self.dir_synced_at.get(os.path.dirname(path), -1)
                state.name_durable = synced > state.created_at
            if not os.path.exists(path):
                continue
            if not state.name_durable:
                os.unlink(path)
                removed.append(path)
                continue
            actual = os.stat(path).st_size
            if actual > state.durable:
                keep = state.durable + rng.randint(0, actual - state.durable)
                if keep < actual:
                    os.truncate(path, keep)
                    torn[path] = (actual, keep)
            lost = _zero_ranges(path, state.poisoned)
            if lost:
                zeroed[path] = lost
        dropped = sum(actual - keep for actual, keep in torn.values())
        proven = bool(removed) or dropped > 0 or bool(zeroed)
        detail = (f"POSIX crash state: {len(removed)} file(s) whose name was never made durable removed, "
                  f"{dropped} unsynced byte(s) dropped from {len(torn)} file(s), "
                  f"{sum(zeroed.values())} byte(s) a failed sync lost zeroed in {len(zeroed)} file(s)")
        return clock.record("posix_crash", proven, detail if proven else detail + " (everything was synced)",
                            removed=[os.path.relpath(p, self.root) for p in removed],
                            torn={os.path.relpath(p, self.root): list(v) for p, v in torn.items()},
                            zeroed={os.path.relpath(p, self.root): n for p, n in zeroed.items()},
                            dropped_bytes=dropped, injected=dict(self.injected))


def _zero_ranges(path: str, ranges: list[tuple[int, int]]) -> int:
    """Overwrite what is left of ``ranges`` with zeros (what the disk holds where writeback failed)."""
    size = os.stat(path).st_size
    zeroed = 0
    fd = os.open(path, os.O_WRONLY)
    try:
        for lo, hi in ranges:
            hi = min(hi, size)
            if hi > lo:
                os.pwrite(fd, bytes(hi - lo), lo)
                zeroed += hi - lo
    finally:
        os.close(fd)
    return zeroed
