"""A private, throwaway filesystem mounted for one test: the base of disk-full and power-loss faults.

Faults that change a whole filesystem (fill it, shut it down, make it read-only) must never reach
the shared root disk, so they only act on mounts whose mount point carries the ``testkit-`` marker
(see :func:`require_owned_mount`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Self

from testkit.faults._system import (
    detach_loops_backed_by,
    make_private_dir,
    mount_entries,
    mount_point_of,
    unmount,
)
from testkit.faults.errors import UnsafeTarget

__all__ = ["MountedFs", "require_owned_mount"]

_OWNED_FRAGMENT = "/testkit-"


def require_owned_mount(path: str | os.PathLike[str]) -> str:
    """Return the mount point holding ``path``; raise :class:`UnsafeTarget` unless testkit made it."""
    entry = mount_point_of(path)
    if entry.mount_point == "/" or _OWNED_FRAGMENT not in entry.mount_point:
        raise UnsafeTarget(
            f"{os.fspath(path)} lives on {entry.mount_point} ({entry.fstype}), which testkit did not "
            "mount; whole-filesystem faults only run on a SmallTmpfs or LoopExt4"
        )
    return entry.mount_point


class MountedFs(os.PathLike[str]):
    """A filesystem mounted on a private directory; ``os.fspath(fs)`` is the mount directory.

    Subclasses implement :meth:`_mount`. Leaving the ``with`` block unmounts (lazily if files
    are still open), detaches any loop device and deletes the work directory, even on failure.
    """

    _purpose = "mount"

    def __init__(self, *, base_dir: str | os.PathLike[str] | None = None) -> None:
        self._base_dir = base_dir
        self._workdir: Path | None = None

    @property
    def workdir(self) -> Path:
        if self._workdir is None:
            raise RuntimeError(f"{type(self).__name__} is not entered")
        return self._workdir

    @property
    def path(self) -> Path:
        """The mount directory."""
        return self.workdir / "mnt"

    def __fspath__(self) -> str:
        return str(self.path)

    def __truediv__(self, other: str | os.PathLike[str]) -> Path:
        return self.path / other

    @property
    def is_mounted(self) -> bool:
        here = str(self.path)
        return any(entry.mount_point == here for entry in mount_entries())

    def _mount(self) -> None:
        raise NotImplementedError

    def _backing_image(self) -> Path | None:
        return None

    def __enter__(self) -> Self:
        if self._workdir is not None:
            raise RuntimeError(f"{self!r} is already mounted; use a new instance")
        self._workdir = make_private_dir(self._purpose, self._base_dir)
        self.path.mkdir()
        try:
            self._mount()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._workdir is None:
            return
        try:
            if self.is_mounted:
                unmount(self.path, lazy_if_busy=True)
        finally:
            image = self._backing_image()
            if image is not None:
                detach_loops_backed_by(image)
            if not self.is_mounted:  # never delete through a mount that refused to go
                shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __repr__(self) -> str:
        where = self._workdir and self.path
        return f"{type(self).__name__}({where or 'not mounted'})"
