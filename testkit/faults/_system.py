"""Thin wrappers over mount, losetup and friends, shared by the disk and power-loss injectors.

Every directory this process mounts on is named ``testkit-<pid>-...`` so that leak checks can tell
our mounts from those of other processes sharing the machine, without any global registry.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from testkit.faults.errors import CommandFailed, MechanismUnavailable, MountBusy

__all__ = [
    "MountEntry",
    "fsync_directory",
    "loop_backing_files",
    "make_private_dir",
    "mount_entries",
    "mount_point_of",
    "owned_marker",
    "probe_errno",
    "run",
    "unmount",
]

_COMMAND_TIMEOUT_S = 60.0


def fsync_directory(path: str | os.PathLike[str]) -> None:
    """Make a directory's entries durable (a campaign's data directory exists before any fault is judged)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def owned_marker(pid: int | None = None) -> str:
    """The name fragment that marks directories made by process ``pid`` (default: this one)."""
    return f"testkit-{os.getpid() if pid is None else pid}-"


def make_private_dir(purpose: str, base_dir: str | os.PathLike[str] | None = None) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"{owned_marker()}{purpose}-", dir=base_dir))


def run(argv: Sequence[str], *, timeout: float = _COMMAND_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    """Run a system command; raise :class:`CommandFailed` (or MechanismUnavailable if absent)."""
    argv = list(argv)
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError as exc:
        raise MechanismUnavailable(f"{argv[0]} is not installed") from exc
    if done.returncode != 0:
        raise CommandFailed(argv, done.returncode, done.stderr)
    return done


@dataclass(frozen=True, slots=True)
class MountEntry:
    mount_point: str
    fstype: str
    source: str
    options: str


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal.
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def mount_entries() -> list[MountEntry]:
    entries = []
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        for line in fh:
            left, _, right = line.partition(" - ")
            fields = left.split()
            fstype, source, *_ = right.split()
            entries.append(MountEntry(_unescape(fields[4]), fstype, _unescape(source), fields[5]))
    return entries


def mount_point_of(path: str | os.PathLike[str]) -> MountEntry:
    """The innermost mount containing ``path`` (the last matching line of mountinfo wins)."""
    target = os.path.realpath(path)
    best: MountEntry | None = None
    for entry in mount_entries():
        mp = entry.mount_point
        inside = target == mp or target.startswith(mp.rstrip("/") + "/")
        if inside and (best is None or len(mp) >= len(best.mount_point)):
            best = entry
    assert best is not None, "/ is always mounted"
    return best


def loop_backing_files() -> dict[str, str]:
    """Bound loop devices -> backing file, read from sysfs (no subprocess, cheap in teardown)."""
    found = {}
    for dev in Path("/sys/block").glob("loop*"):
        backing = dev / "loop" / "backing_file"
        try:
            found[f"/dev/{dev.name}"] = backing.read_text().strip()
        except OSError:
            continue
    return found


def unmount(mount_dir: str | os.PathLike[str], *, lazy_if_busy: bool) -> None:
    """Unmount; when files are still open either raise :class:`MountBusy` or detach lazily.

    Lazy detach is for cleanup only: the mount disappears from the tree at once and the kernel
    frees it (and the autoclear loop device) when the last file is closed.
    """
    path = os.fspath(mount_dir)
    try:
        run(["umount", path])
        return
    except CommandFailed as exc:
        if "busy" not in exc.stderr and "target is busy" not in exc.stderr:
            raise
        if not lazy_if_busy:
            raise MountBusy(f"{path} has open files; close them (or kill the process holding them) first") from exc
    run(["umount", "--lazy", path])


def detach_loops_backed_by(image: str | os.PathLike[str]) -> list[str]:
    """Detach loop devices still bound to ``image`` (autoclear usually did it; this is the net).

    On a device still in use (a lazily unmounted filesystem with open files) the kernel defers
    the detach to the last close, so one pass is enough.
    """
    image_path = os.path.realpath(image)
    bound = [dev for dev, backing in loop_backing_files().items() if backing == image_path]
    for dev in bound:
        with contextlib.suppress(CommandFailed):  # already gone between the scan and the detach
            run(["losetup", "-d", dev])
    return bound


def probe_errno(directory: str | os.PathLike[str], size: int = 1) -> tuple[int | None, int]:
    """Try to create a probe file in ``directory`` and write ``size`` bytes to it.

    Returns (errno or None, bytes accepted). The probe is removed again, so that observing a fault
    does not change the state under test.
    """
    path = os.path.join(directory, f".testkit-probe-{os.getpid()}-{time.monotonic_ns()}")
    chunk = bytes(min(size, 1 << 16))
    written = 0
    fd = -1
    try:
        fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
        while written < size:
            n = os.write(fd, chunk[: size - written])
            if n == 0:
                break
            written += n
        os.fsync(fd)
        return None, written
    except OSError as exc:
        return exc.errno if exc.errno is not None else errno.EIO, written
    finally:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
