"""Disk faults on a private filesystem: no space, no inodes, read-only.

The fault is made real (the kernel answers ENOSPC / EROFS), then observed with a probe write
before anything is judged. Whole-filesystem faults only act on mounts testkit made, so a test can
never fill or freeze the shared root disk.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testkit.faults._system import probe_errno, run
from testkit.faults.errors import CommandFailed, FaultNotProven, InvalidFaultSpec, MechanismUnavailable, MountBusy
from testkit.faults.mounts import MountedFs, require_owned_mount
from testkit.faults.records import FaultClock, FaultRecord

__all__ = [
    "Ballast",
    "FakeDiskFull",
    "SmallTmpfs",
    "disk_full",
    "exhaust_inodes",
    "fill",
    "free_bytes",
    "free_space",
    "remount_readonly",
]

_PROBE_MARGIN_BYTES = 1 << 16


class SmallTmpfs(MountedFs):
    """A size-limited tmpfs: real ENOSPC at ``size_bytes``, ENOSPC on create at ``nr_inodes``.

    fsync always succeeds on tmpfs: use :class:`~testkit.faults.powerloss.LoopExt4` for durability.
    """

    _purpose = "tmpfs"

    def __init__(
        self, size_bytes: int, nr_inodes: int | None = None, *, base_dir: str | os.PathLike[str] | None = None
    ) -> None:
        if size_bytes < 4096:
            raise InvalidFaultSpec(f"size_bytes must be at least one page (4096), got {size_bytes}")
        if nr_inodes is not None and nr_inodes < 2:
            raise InvalidFaultSpec(f"nr_inodes must be at least 2 (the root directory uses one), got {nr_inodes}")
        super().__init__(base_dir=base_dir)
        self.size_bytes = size_bytes
        self.nr_inodes = nr_inodes

    def _mount(self) -> None:
        options = f"size={self.size_bytes},mode=0755"
        if self.nr_inodes is not None:
            options += f",nr_inodes={self.nr_inodes}"
        try:
            run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(self.path)])
        except CommandFailed as exc:
            raise MechanismUnavailable(f"cannot mount tmpfs here: {exc}") from exc


def free_bytes(directory: str | os.PathLike[str]) -> int:
    """Bytes this process may still allocate there (root may use blocks reserved for root)."""
    st = os.statvfs(directory)
    blocks = st.f_bfree if os.geteuid() == 0 else st.f_bavail
    return blocks * st.f_frsize


@dataclass(frozen=True, slots=True)
class Ballast:
    """Files that eat space or inodes; hand to :func:`free_space` to give it back."""

    directory: Path
    paths: tuple[Path, ...]
    size_bytes: int
    record: FaultRecord


def _ballast_name(tag: str) -> str:
    return f".testkit-{tag}-{os.getpid()}-{time.monotonic_ns()}"


def _allocate(fd: int, offset: int, length: int) -> None:
    try:
        os.posix_fallocate(fd, offset, length)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.ENOTSUP):
            raise
        os.lseek(fd, offset, os.SEEK_SET)
        chunk = bytes(min(length, 1 << 20))
        remaining = length
        while remaining:
            remaining -= os.write(fd, chunk[:remaining])


def _grow_until(fd: int, directory: str | os.PathLike[str], leave_bytes: int, block: int) -> int:
    """Allocate in shrinking chunks until less than one block above ``leave_bytes`` is free."""
    size = 0
    while True:
        want = (free_bytes(directory) - leave_bytes) // block * block
        if want < block:
            return size
        while want >= block:
            try:
                _allocate(fd, size, want)
                size += want
                break
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                want = want // 2 // block * block  # metadata ate some room: ask for less
        else:
            return size


def fill(directory: str | os.PathLike[str], leave_bytes: int = 0) -> Ballast:
    """Fill the filesystem of ``directory`` until only ``leave_bytes`` remain; prove ENOSPC.

    Proof: a probe write of ``leave_bytes`` + 64 KiB fails with ENOSPC (then is deleted). Put the
    store's data in a subdirectory and fill the mount root, so the store never sees the ballast.
    Raises :class:`FaultNotProven` (ballast removed) when the disk does not report full.
    """
    if leave_bytes < 0:
        raise InvalidFaultSpec(f"leave_bytes must be >= 0, got {leave_bytes}")
    require_owned_mount(directory)
    clock = FaultClock()
    path = Path(directory) / _ballast_name("ballast")
    block = os.statvfs(directory).f_frsize
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
    try:
        size = _grow_until(fd, directory, leave_bytes, block)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink()
        raise
    os.close(fd)
    remaining = free_bytes(directory)
    observed, accepted = probe_errno(directory, remaining + _PROBE_MARGIN_BYTES)
    record = clock.record(
        "disk_full",
        observed == errno.ENOSPC,
        f"ballast {size} B; probe write got {errno.errorcode.get(observed or 0, 'no error')} "
        f"after {accepted} B (asked to leave {leave_bytes} B)",
        ballast_bytes=size,
        free_bytes=remaining,
        probe_accepted_bytes=accepted,
        errno=observed,
    )
    ballast = Ballast(Path(directory), (path,), size, record)
    if not record.proven:
        free_space(ballast)
        raise FaultNotProven(record)
    return ballast


def exhaust_inodes(directory: str | os.PathLike[str], *, max_files: int = 1_000_000) -> Ballast:
    """Create empty files until the filesystem has no inode left; prove ENOSPC on create."""
    require_owned_mount(directory)
    clock = FaultClock()
    holder = Path(directory) / _ballast_name("inodes")
    holder.mkdir()
    created: list[Path] = []
    observed: int | None = None
    try:
        for index in range(max_files):
            path = holder / str(index)
            try:
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600))
            except OSError as exc:
                observed = exc.errno
                break
            created.append(path)
    except BaseException:
        shutil.rmtree(holder, ignore_errors=True)
        raise
    free_inodes = os.statvfs(directory).f_ffree
    record = clock.record(
        "inodes_exhausted",
        observed == errno.ENOSPC and free_inodes == 0,
        f"created {len(created)} files, then {errno.errorcode.get(observed or 0, 'no error')}; "
        f"{free_inodes} inodes free",
        files_created=len(created),
        errno=observed,
        free_inodes=free_inodes,
    )
    ballast = Ballast(Path(directory), (holder,), 0, record)
    if not record.proven:
        free_space(ballast)
        raise FaultNotProven(record)
    return ballast


def free_space(ballast: Ballast) -> FaultRecord:
    """Delete the ballast; proven when a probe write succeeds again (the disk is usable)."""
    clock = FaultClock()
    for path in ballast.paths:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    probe_size = min(max(ballast.size_bytes, 1), _PROBE_MARGIN_BYTES)
    observed, accepted = probe_errno(ballast.directory, probe_size)
    return clock.record(
        "space_freed",
        observed is None,
        f"probe write of {probe_size} B after freeing: {errno.errorcode.get(observed or 0, 'ok')}",
        errno=observed,
        probe_accepted_bytes=accepted,
        free_bytes=free_bytes(ballast.directory),
    )


@contextlib.contextmanager
def disk_full(directory: str | os.PathLike[str], leave_bytes: int = 0) -> Iterator[Ballast]:
    """:func:`fill` for the body of the ``with``, :func:`free_space` afterwards (always)."""
    ballast = fill(directory, leave_bytes)
    try:
        yield ballast
    finally:
        free_space(ballast).require()


@contextlib.contextmanager
def remount_readonly(directory: str | os.PathLike[str]) -> Iterator[FaultRecord]:
    """Remount the testkit-owned filesystem of ``directory`` read-only; proven by EROFS on create.

    The kernel refuses (:class:`MountBusy`) while any file there is open for writing, so close
    the store (or kill its process) first, then reopen it on the read-only filesystem.
    """
    mount_point = require_owned_mount(directory)
    clock = FaultClock()
    try:
        run(["mount", "-o", "remount,ro", mount_point])
    except CommandFailed as exc:
        if "busy" in exc.stderr:
            raise MountBusy(
                f"{mount_point} has files open for writing; the kernel refuses a read-only remount"
            ) from exc
        raise
    try:
        observed, _ = probe_errno(mount_point)
        record = clock.record(
            "read_only",
            observed == errno.EROFS,
            f"create after remount,ro gave {errno.errorcode.get(observed or 0, 'no error')}",
            mount_point=mount_point,
            errno=observed,
        )
        record.require()
        yield record
    finally:
        run(["mount", "-o", "remount,rw", mount_point])
        observed, _ = probe_errno(mount_point)
        if observed is not None:
            raise FaultNotProven(clock.record("read_write_restored", False, f"still not writable: errno {observed}"))


class FakeDiskFull:
    """In-process fallback when mounts are unavailable: a pyfakefs filesystem with a capacity.

    Inside the ``with`` block the *whole process* sees the fake filesystem (the real one is
    hidden), writes past ``capacity_bytes`` raise OSError(ENOSPC); no short writes, fsync is a
    no-op, and code in other processes or in C (sqlite3) is not affected.
    """

    def __init__(self, directory: str | os.PathLike[str], capacity_bytes: int) -> None:
        if capacity_bytes < 1:
            raise InvalidFaultSpec(f"capacity_bytes must be >= 1, got {capacity_bytes}")
        self.directory = os.path.abspath(directory)
        self.capacity_bytes = capacity_bytes
        self._patcher: Any = None
        self.record: FaultRecord | None = None

    @property
    def fs(self) -> Any:
        """The pyfakefs ``FakeFilesystem`` (for ``create_file``, ``set_disk_usage``...)."""
        if self._patcher is None:
            raise RuntimeError("FakeDiskFull is not entered")
        return self._patcher.fs

    def __enter__(self) -> FakeDiskFull:
        try:
            from pyfakefs.fake_filesystem_unittest import Patcher
        except ImportError as exc:
            raise MechanismUnavailable("pyfakefs is not installed") from exc
        clock = FaultClock()
        self._patcher = Patcher()
        self._patcher.setUp()
        try:
            self.fs.create_dir(self.directory)
            self.fs.set_disk_usage(self.capacity_bytes, path=self.directory)
            observed, accepted = probe_errno(self.directory, self.capacity_bytes + 1)
            self.record = clock.record(
                "disk_full_fake",
                observed == errno.ENOSPC,
                f"pyfakefs probe write got {errno.errorcode.get(observed or 0, 'no error')} after {accepted} B",
                errno=observed,
                probe_accepted_bytes=accepted,
            ).require()
        except BaseException:
            self._patcher.tearDown()
            self._patcher = None
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._patcher is not None:
            self._patcher.tearDown()
            self._patcher = None
