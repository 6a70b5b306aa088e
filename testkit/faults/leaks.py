"""Did a test leave a mount, a loop device or a child process behind?

Only what *this* process owns is considered: mounts on ``testkit-<pid>-`` directories, loop
devices backed by files in them, and our own descendants. Other sessions on a shared machine can
mount and spawn freely without tripping the check.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import psutil

from testkit.faults._system import loop_backing_files, mount_entries, owned_marker
from testkit.faults.errors import FaultError

__all__ = ["LeakedResources", "OwnedResources", "no_leaks"]


class LeakedResources(FaultError, AssertionError):
    """Mounts, loop devices or children outlived the block that made them."""


@dataclass(frozen=True, slots=True)
class OwnedResources:
    mounts: frozenset[str]
    loop_devices: frozenset[str]
    children: frozenset[int]

    @classmethod
    def snapshot(cls) -> OwnedResources:
        marker = f"/{owned_marker()}"
        mounts = frozenset(e.mount_point for e in mount_entries() if marker in e.mount_point)
        loops = frozenset(f"{dev} ({backing})" for dev, backing in loop_backing_files().items() if marker in backing)
        children = frozenset(p.pid for p in psutil.Process(os.getpid()).children(recursive=True) if _alive(p))
        return cls(mounts, loops, children)

    def new_since(self, before: OwnedResources) -> OwnedResources:
        return OwnedResources(
            self.mounts - before.mounts, self.loop_devices - before.loop_devices, self.children - before.children
        )

    def __bool__(self) -> bool:
        return bool(self.mounts or self.loop_devices or self.children)


def _alive(process: psutil.Process) -> bool:
    try:
        return bool(process.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


@contextlib.contextmanager
def no_leaks() -> Iterator[OwnedResources]:
    """Raise :class:`LeakedResources` if the body leaves new owned mounts, loops or live children."""
    before = OwnedResources.snapshot()
    yield before
    leaked = OwnedResources.snapshot().new_since(before)
    if leaked:
        raise LeakedResources(
            f"left behind: mounts={sorted(leaked.mounts)} loop devices={sorted(leaked.loop_devices)} "
            f"children={sorted(leaked.children)}"
        )
