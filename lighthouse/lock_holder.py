"""Who holds a file's ``flock``: the process named in ``/proc/locks``, so a refused open can say who is in the way.

A "store is in use" error is only actionable when it names the holder (a forgotten server, a child
that inherited the lock's file description, a process still dying). Linux lists every lock with the
PID that took it and the file's device and inode; elsewhere the holder is simply unknown.
"""

from __future__ import annotations

import os

__all__ = ["describe_lock_holder"]


def _holders(device: int, inode: int, locks_path: str) -> list[int]:
    wanted = f"{os.major(device):02x}:{os.minor(device):02x}:{inode}"
    pids = []
    try:
        with open(locks_path, encoding="ascii", errors="replace") as fh:
            for line in fh:
                fields = line.split()
                # "1: FLOCK  ADVISORY  WRITE 15181 00:1b:226568 0 EOF"; blocked waiters are marked "->"
                if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == wanted:
                    pids.append(int(fields[4]))
    except (OSError, ValueError):
        return []
    return pids


def _command_line(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return " ".join(fh.read().replace(b"\0", b" ").decode(errors="replace").split())[:200] or "?"
    except OSError:
        return "gone"


def describe_lock_holder(fd: int, *, locks_path: str = "/proc/locks") -> str:
    """``"held by pid 123 (python -m ...)"`` for the flock on ``fd``'s file, or ``""`` when nobody can be named."""
    stat = os.fstat(fd)
    holders = [pid for pid in _holders(stat.st_dev, stat.st_ino, locks_path)]
    if not holders:
        return ""
    return "held by " + ", ".join(f"pid {pid} ({_command_line(pid)})" for pid in holders)
