"""The order of system calls an atomic file publication needs: write temp, fsync it, rename, fsync the directory.

A crash test only catches a missing step when the crash lands in its window, and the POSIX crash model
takes renames as durable at once; reading the order off the trace catches every save, crash or not
(ALICE's approach). Rules, for files published under ``root``:

* nothing is written under a final name (``*.snap`` not starting with a dot): a save goes to a temp file;
* a temp file is fsynced after its last write and before it is renamed into place;
* a directory created under ``root`` has its parent fsynced before anything is renamed into it;
* after the rename, the directory is fsynced before the next rename into it (and before the thread goes
  on doing anything else, when the trace shows it did).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from testkit.faults.persistence import TraceReader

__all__ = ["check_atomic_publish"]

_RENAMES = ("rename", "renameat", "renameat2")
_WRITES = ("write", "pwrite64", "writev", "pwritev", "pwritev2")


def check_atomic_publish(lines: Sequence[str], root: str | os.PathLike[str], *, final_suffix: str = ".snap") -> list[str]:
    """Every publication under ``root`` that skipped or reordered a step, as one sentence each."""
    base = os.path.realpath(root)
    calls = TraceReader().calls(list(lines))
    problems: list[str] = []
    last_write: dict[str, int] = {}
    last_sync: dict[str, int] = {}
    unsynced_publish: dict[str, tuple[int, str, int]] = {}  # directory -> (index, published file, thread)
    unsynced_mkdir: dict[str, str] = {}  # parent directory -> the directory created in it, not yet durable

    def ours(path: str | None) -> bool:
        return path is not None and (path == base or path.startswith(base + os.sep))

    for index, call in enumerate(calls):
        if call.ret < 0:
            continue
        path = call.fd_path()
        if call.name in _WRITES and ours(path) and call.ret > 0:
            assert path is not None
            name = Path(path).name
            if name.endswith(final_suffix) and not name.startswith("."):
                problems.append(f"{name} written in place under its final name (no temp file)")
            last_write[path] = index
        elif call.name in ("fsync", "fdatasync") and ours(path):
            assert path is not None
            last_sync[path] = index
            unsynced_publish.pop(path, None)
            unsynced_mkdir.pop(path, None)
        elif call.name in ("mkdir", "mkdirat"):
            quoted = [os.path.realpath(q) for q in call.quoted_paths()]
            if quoted and ours(quoted[0]):
                unsynced_mkdir[os.path.dirname(quoted[0])] = quoted[0]
        elif call.name in _RENAMES:
            quoted = [os.path.realpath(q) for q in call.quoted_paths()]
            if len(quoted) < 2 or not ours(quoted[1]):
                continue
            source, target = quoted[0], quoted[1]
            for parent, created in list(unsynced_mkdir.items()):
                if target.startswith(created + os.sep):
                    problems.append(f"{Path(target).name} renamed into {Path(created).name}, whose creation was "
                                    f"never made durable (no fsync of {Path(parent).name})")
                    del unsynced_mkdir[parent]
            if last_write.get(source, -1) > last_sync.get(source, -1):
                problems.append(f"{Path(target).name} renamed into place before its contents were fsynced")
            folder = os.path.dirname(target)
            earlier = unsynced_publish.get(folder)
            if earlier is not None:
                problems.append(f"{Path(earlier[1]).name} published without a directory fsync before the next save")
            unsynced_publish[folder] = (index, target, call.tid)
    for folder, (index, target, tid) in unsynced_publish.items():
        # Opening the directory is the start of its fsync; anything else the thread did next means it skipped it.
        if any(later.tid == tid and later.name not in ("open", "openat") for later in calls[index + 1:]):
            problems.append(f"{Path(target).name} published without a directory fsync of {Path(folder).name}")
    return problems

