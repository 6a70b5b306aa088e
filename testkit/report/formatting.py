"""Turn raw figures into the words a test engineer reads: units scaled, verdicts named, targets spelled out.

Results store raw numbers (latencies in ns, sizes in bytes); every table and plot goes through this module so
that the same quantity reads the same way everywhere in the report.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

__all__ = [
    "Tone",
    "format_number",
    "format_quantity",
    "format_duration_s",
    "scale_for",
    "target_text",
    "target_met",
    "tone_of",
]

#: How a verdict is coloured: pass (green), fail (red), warn (amber), skip (grey), info (neutral).
Tone = Literal["pass", "fail", "warn", "skip", "info"]

_TIME_UNITS_NS: dict[str, float] = {"ns": 1.0, "us": 1e3, "µs": 1e3, "ms": 1e6, "s": 1e9}
_TIME_STEPS: tuple[tuple[str, float], ...] = (("s", 1e9), ("ms", 1e6), ("µs", 1e3), ("ns", 1.0))
_BYTE_UNITS: dict[str, float] = {"b": 1.0, "byte": 1.0, "bytes": 1.0, "kib": 1024.0, "kb": 1000.0,
                                 "mib": 1024.0**2, "mb": 1e6, "gib": 1024.0**3, "gb": 1e9}
_BYTE_STEPS: tuple[tuple[str, float], ...] = (("GiB", 1024.0**3), ("MiB", 1024.0**2), ("KiB", 1024.0), ("B", 1.0))
_OPS: dict[str, str] = {"<=": "≤", "<": "<", ">=": "≥", ">": ">", "==": "=", "=": "="}

_PASS_WORDS = ("pass", "ok", "green", "success", "no leak", "no_leak", "none", "stable", "improved", "faster")
_FAIL_WORDS = ("fail", "error", "violation", "red", "leak", "block", "regress", "lost", "broken", "slower")
_WARN_WORDS = ("warn", "investigate", "inconclusive", "unknown", "noise", "xpass", "flaky", "unproven")
_SKIP_WORDS = ("skip", "xfail", "deselected", "not run", "not_run", "absent", "missing", "insufficient")


def tone_of(verdict: Any) -> Tone:
    """Map a verdict word (or a bool) to its colour; unknown words read as neutral information."""
    if verdict is None:
        return "info"
    if isinstance(verdict, bool):
        return "pass" if verdict else "fail"
    word = str(verdict).strip().lower()
    if word in ("none", "clean") or word.startswith(("no ", "no_", "no-", "not leak")):
        return "pass"  # "no leak", "no regression", "no_violations"
    for words, tone in ((_WARN_WORDS, "warn"), (_SKIP_WORDS, "skip"), (_FAIL_WORDS, "fail"),
                        (_PASS_WORDS, "pass")):
        if any(w in word for w in words):
            return tone  # type: ignore[return-value]
    return "info"


def format_number(value: float | int | None, digits: int = 3) -> str:
    """A number with ``digits`` significant figures and thousands separators; '—' when absent."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int) or float(value).is_integer() and abs(value) >= 1:
        return f"{int(value):,}"
    magnitude = abs(float(value))
    if magnitude >= 10 ** digits:
        return f"{value:,.0f}"
    if magnitude == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(magnitude)))
    return f"{value:,.{decimals}f}"


def scale_for(values_max: float, unit: str) -> tuple[str, float]:
    """The display unit and divisor that make ``values_max`` (in ``unit``) read naturally: 1.2e6 ns -> ms."""
    key = unit.strip().lower()
    if unit.strip() in _TIME_UNITS_NS or key in _TIME_UNITS_NS:
        base = _TIME_UNITS_NS.get(unit.strip(), _TIME_UNITS_NS.get(key, 1.0))
        in_ns = abs(values_max) * base
        for name, size in _TIME_STEPS:
            if in_ns >= size or name == "ns":
                return name, size / base
    if key in _BYTE_UNITS:
        base = _BYTE_UNITS[key]
        in_bytes = abs(values_max) * base
        for name, size in _BYTE_STEPS:
            if in_bytes >= size or name == "B":
                return name, size / base
    return unit, 1.0


def format_quantity(value: float | int | None, unit: str | None) -> str:
    """A value with its unit, scaled to a readable magnitude: (1_530_000, 'ns') -> '1.53 ms'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    unit = (unit or "").strip()
    if not unit:
        return format_number(value)
    shown_unit, divisor = scale_for(float(value), unit)
    text = format_number(float(value) / divisor)
    return f"{text} {shown_unit}" if shown_unit not in ("x", "×") else f"{text}×"


def format_duration_s(seconds: float | None) -> str:
    """A wall-clock duration: '850 ms', '12.3 s', '4 min 05 s'."""
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(round(seconds)), 60)
    if minutes < 120:
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def target_text(target: Mapping[str, Any] | None, unit: str | None) -> str:
    """A target as a person writes it: {'op': '<=', 'value': 2e6} in ns -> '≤ 2 ms'."""
    if not target:
        return "—"
    op = _OPS.get(str(target.get("op", "<=")), str(target.get("op", "")))
    return f"{op} {format_quantity(target.get('value'), unit)}"


def target_met(value: float | None, target: Mapping[str, Any] | None) -> bool | None:
    """Whether ``value`` meets ``target``; None when either is missing or the operator is unknown."""
    if value is None or not target or target.get("value") is None:
        return None
    limit = float(target["value"])
    op = str(target.get("op", "<="))
    comparisons = {"<=": value <= limit, "<": value < limit, ">=": value >= limit, ">": value > limit,
                   "==": value == limit, "=": value == limit}
    return comparisons.get(op)
