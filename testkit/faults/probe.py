"""Does this machine really provide each fault mechanism? Checked by doing it once, then cached.

A probe performs the mechanism for real on a throwaway target (mounts a tiny tmpfs, shuts down a
tiny ext4, compiles the shim, injects with strace) rather than guessing from uid or PATH, so a
suite skips with the true reason. Results are cached per process (a session probes once).
"""

from __future__ import annotations

import errno
import functools
import importlib.metadata
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from testkit.faults.errors import FaultError

__all__ = [
    "Available",
    "ProbeResult",
    "Unavailable",
    "all_probes",
    "probe_gcc",
    "probe_loop_mount",
    "probe_pyfakefs",
    "probe_root",
    "probe_shutdown_ioctl",
    "probe_strace",
    "probe_tmpfs",
]


@dataclass(frozen=True, slots=True)
class Available:
    detail: str = ""

    def __bool__(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class Unavailable:
    reason: str

    def __bool__(self) -> bool:
        return False


ProbeResult = Available | Unavailable


def _guarded(probe: Callable[[], ProbeResult]) -> Callable[[], ProbeResult]:
    """Cache the probe and turn any failure into Unavailable with the error as the reason."""

    @functools.cache
    @functools.wraps(probe)
    def wrapper() -> ProbeResult:
        try:
            return probe()
        except (FaultError, OSError, subprocess.SubprocessError) as exc:
            return Unavailable(f"{type(exc).__name__}: {exc}")

    return wrapper


@_guarded
def probe_root() -> ProbeResult:
    if os.geteuid() != 0:
        return Unavailable(f"not root (euid {os.geteuid()}): mounts and loop devices need root")
    return Available("euid 0")


@_guarded
def probe_tmpfs() -> ProbeResult:
    from testkit.faults._system import probe_errno
    from testkit.faults.disk import SmallTmpfs

    if not probe_root():
        return Unavailable("tmpfs mounts need root")
    with SmallTmpfs(16 * 4096) as fs:
        observed, _ = probe_errno(fs, 32 * 4096)
    if observed != errno.ENOSPC:
        return Unavailable(f"a 64 KiB tmpfs accepted 128 KiB (errno {observed})")
    return Available("size-limited tmpfs gives ENOSPC")


@_guarded
def probe_loop_mount() -> ProbeResult:
    from testkit.faults.powerloss import LoopExt4

    if not probe_root():
        return Unavailable("loop mounts need root")
    for tool in ("mkfs.ext4", "mount", "umount", "losetup"):
        if shutil.which(tool) is None:
            return Unavailable(f"{tool} is not installed")
    with LoopExt4(4) as fs:
        (fs / "probe").write_bytes(b"x")
    return Available("loop-mounted ext4 works")


@_guarded
def probe_shutdown_ioctl() -> ProbeResult:
    from testkit.faults.powerloss import LoopExt4

    loop = probe_loop_mount()
    if not loop:
        return loop
    with LoopExt4(4) as fs:
        record = fs.cut_power()
    if not record.proven:
        return Unavailable(f"FS_IOC_SHUTDOWN did not stop writes: {record.detail}")
    return Available("FS_IOC_SHUTDOWN (no log flush) gives EIO afterwards")


@_guarded
def probe_gcc() -> ProbeResult:
    from testkit.faults.ioshim import build_shim

    return Available(f"shim built at {build_shim()}")


@_guarded
def probe_strace() -> ProbeResult:
    from testkit.faults._system import make_private_dir

    strace = shutil.which("strace")
    if strace is None:
        return Unavailable("strace is not installed")
    workdir = make_private_dir("strace-probe")
    try:
        target = workdir / "made-by-mkdir"
        done = subprocess.run(
            [
                strace,
                "-f",
                "-qq",
                "-o",
                os.devnull,
                "-e",
                "trace=mkdir,mkdirat",
                "-e",
                "inject=mkdir,mkdirat:error=EROFS",
                "--",
                "mkdir",
                str(target),
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if done.returncode == 0 or target.exists():
            return Unavailable(f"strace ran but did not inject (exit {done.returncode}): {done.stderr.strip()}")
        if "Read-only" not in done.stderr:
            return Unavailable(f"strace could not trace: {done.stderr.strip()}")
        return Available("strace -e inject works")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@_guarded
def probe_pyfakefs() -> ProbeResult:
    try:
        version = importlib.metadata.version("pyfakefs")
    except importlib.metadata.PackageNotFoundError:
        return Unavailable("pyfakefs is not installed")
    return Available(f"pyfakefs {version}")


def all_probes() -> dict[str, ProbeResult]:
    """Every probe by name, for the report."""
    probes = (probe_root, probe_tmpfs, probe_loop_mount, probe_shutdown_ioctl, probe_gcc, probe_strace, probe_pyfakefs)
    return {probe.__name__.removeprefix("probe_"): probe() for probe in probes}
