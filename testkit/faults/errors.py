"""Typed errors of the fault injectors.

A fault test that cannot show its fault happened must fail loudly rather than pass on a no-op, so
"the fault did not happen" and "this machine cannot do that" are distinct, catchable types.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from testkit.faults.records import FaultRecord

__all__ = [
    "CommandFailed",
    "FaultError",
    "FaultNotProven",
    "InvalidFaultSpec",
    "MechanismUnavailable",
    "MountBusy",
    "UnsafeTarget",
]


class FaultError(Exception):
    """Base class of every error raised by :mod:`testkit.faults`."""


class InvalidFaultSpec(FaultError, ValueError):
    """The caller asked for a fault that makes no sense (negative size, unknown errno name...)."""


class MechanismUnavailable(FaultError):
    """The machine cannot produce this fault (no root, no loop devices, no gcc...).

    Suites turn this into a skip that shows :attr:`reason`.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class FaultNotProven(FaultError, AssertionError):
    """The injector ran but could not observe its fault, so any verdict built on it would be void."""

    def __init__(self, record: FaultRecord) -> None:
        super().__init__(f"fault {record.kind!r} not proven: {record.detail}")
        self.record = record


class UnsafeTarget(FaultError):
    """Refused: the fault would hit something shared (the root disk, a directory we did not mount)."""


class MountBusy(FaultError):
    """A mount could not be changed because files in it are still open."""


class CommandFailed(FaultError):
    """A system command (mount, mkfs, gcc...) exited non-zero; carries its stderr."""

    def __init__(self, argv: list[str], returncode: int, stderr: str) -> None:
        first_line = next(iter(stderr.strip().splitlines()), "")
        super().__init__(f"{' '.join(argv)} exited {returncode}: {first_line}")
        self.argv = argv
        self.returncode = returncode
        self.stderr = stderr
