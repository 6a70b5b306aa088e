"""Typed errors of :mod:`testkit.load`, so a test can tell a bad plan from a failed worker."""

from __future__ import annotations

__all__ = ["InvalidProfile", "LoadConfigError", "LoadError", "OperationFactoryError", "WorkerFailed"]


class LoadError(Exception):
    """Base class of every error :mod:`testkit.load` raises."""


class InvalidProfile(LoadError, ValueError):
    """A rate profile with a negative or non-finite rate, an empty duration, or knots out of order."""


class LoadConfigError(LoadError, ValueError):
    """Runner options that cannot work together (no clients, no duration, a bad tolerance, ...)."""


class OperationFactoryError(LoadConfigError):
    """A ``"module:function"`` reference that cannot be imported or does not name a callable."""


class WorkerFailed(LoadError):
    """A worker process of a multi-process run crashed, timed out or raised; carries its traceback."""
