"""Power loss: a loop-mounted ext4 image shut down with ``FS_IOC_SHUTDOWN`` and no journal flush.

After the ioctl the kernel refuses every further write to the filesystem (EIO) and drops what
was only in the page cache, so after an unmount and a fresh mount the disk holds exactly what had
been made durable by fsync: the same outcome as pulling the plug, without a VM.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import time
from collections.abc import Sequence
from pathlib import Path

from testkit.faults._system import mount_point_of, probe_errno, run, unmount
from testkit.faults.errors import CommandFailed, InvalidFaultSpec, MechanismUnavailable, MountBusy
from testkit.faults.mounts import MountedFs, require_owned_mount
from testkit.faults.records import FaultClock, FaultRecord

__all__ = ["FS_IOC_SHUTDOWN", "SHUTDOWN_NOLOGFLUSH", "LoopExt4", "cut_power"]

#: ``_IOR('X', 125, __u32)`` from linux/fs.h (EXT4_IOC_SHUTDOWN shares the number).
FS_IOC_SHUTDOWN = 0x8004587D
#: EXT4_GOING_FLAGS_NOLOGFLUSH: stop now, do not flush the journal (the harshest cut).
SHUTDOWN_NOLOGFLUSH = 2

_SHUTDOWN_CAPABLE = frozenset({"ext4", "xfs", "f2fs"})


class LoopExt4(MountedFs):
    """A fresh ext4 filesystem in a sparse image file, loop-mounted on a private directory.

    ``mkfs -m 0`` reserves no blocks for root, so the space a root test sees matches statvfs.
    ``inodes`` (mkfs ``-N``) makes inode exhaustion cheap.
    """

    _purpose = "loopext4"

    def __init__(
        self,
        size_mb: int = 16,
        *,
        inodes: int | None = None,
        mount_options: Sequence[str] = (),
        base_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if size_mb < 2:
            raise InvalidFaultSpec(f"size_mb must be at least 2 (ext4 needs room for a journal), got {size_mb}")
        if inodes is not None and inodes < 16:
            raise InvalidFaultSpec(f"inodes must be at least 16, got {inodes}")
        super().__init__(base_dir=base_dir)
        self.size_mb = size_mb
        self.inodes = inodes
        self.mount_options = tuple(mount_options)

    @property
    def image(self) -> Path:
        return self.workdir / "disk.img"

    def _backing_image(self) -> Path | None:
        return self.image

    def _mount(self) -> None:
        with open(self.image, "wb") as fh:
            fh.truncate(self.size_mb * 1024 * 1024)
        mkfs = ["mkfs.ext4", "-q", "-F", "-m", "0"]
        if self.inodes is not None:
            mkfs += ["-N", str(self.inodes)]
        run([*mkfs, str(self.image)])
        self._mount_image()

    def _mount_image(self) -> None:
        options = ",".join(("loop", *self.mount_options))
        try:
            run(["mount", "-o", options, str(self.image), str(self.path)])
        except CommandFailed as exc:
            raise MechanismUnavailable(f"cannot loop-mount ext4 here: {exc}") from exc

    def cut_power(self) -> FaultRecord:
        """Shut the filesystem down without flushing; see :func:`cut_power`."""
        return cut_power(self.path)

    def remount(self, *, busy_timeout_s: float = 15.0) -> None:
        """Unmount and mount the image again, so what is visible is what the disk really holds.

        Waits up to ``busy_timeout_s`` for files still open in it to be closed: a killed store's
        helper processes (a database server's backends) die a moment after the process that owned
        them, and after the cut nothing they do reaches the disk. Then raises
        :class:`~testkit.faults.errors.MountBusy`: kill or close whatever holds them first (a real
        reboot would have).
        """
        deadline = time.monotonic() + busy_timeout_s
        pause_s = 0.001
        while True:
            try:
                unmount(self.path, lazy_if_busy=False)
                break
            except MountBusy:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(pause_s)  # no event says "the last file in this mount closed": poll
                pause_s = min(pause_s * 2, 0.1)
        self._mount_image()


def cut_power(mount_dir: str | os.PathLike[str]) -> FaultRecord:
    """Cut power to the testkit-owned filesystem holding ``mount_dir``; proven by EIO afterwards.

    Refuses (:class:`~testkit.faults.errors.UnsafeTarget`) any filesystem testkit did not mount.
    """
    mount_point = require_owned_mount(mount_dir)
    fstype = mount_point_of(mount_point).fstype
    if fstype not in _SHUTDOWN_CAPABLE:
        raise MechanismUnavailable(f"{fstype} has no shutdown ioctl; use LoopExt4")
    clock = FaultClock()
    fd = os.open(mount_point, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.ioctl(fd, FS_IOC_SHUTDOWN, struct.pack("I", SHUTDOWN_NOLOGFLUSH))
    except OSError as exc:
        raise MechanismUnavailable(f"FS_IOC_SHUTDOWN failed on {mount_point}: {exc}") from exc
    finally:
        os.close(fd)
    t_ioctl = time.time()
    observed, _ = probe_errno(mount_point)
    proven = observed == errno.EIO
    name = errno.errorcode.get(observed, str(observed)) if observed else "no error"
    return clock.record(
        "power_cut",
        proven,
        f"{mount_point}: create+write after shutdown gave {name}",
        mount_point=mount_point,
        errno=observed,
        shutdown_at=t_ioctl,
    )
