"""Argument checks shared by the runners, so every bad option fails the same clear way."""

from __future__ import annotations

import math

from testkit.load.errors import LoadConfigError

__all__ = ["check_positive_int", "check_seconds"]


def check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise LoadConfigError(f"{name} must be a positive int, got {value!r}")


def check_seconds(name: str, value: float, *, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        bound = ">=" if allow_zero else ">"
        raise LoadConfigError(f"{name} must be a finite number of seconds {bound} 0, got {value!r}")
