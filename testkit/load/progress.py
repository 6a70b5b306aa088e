"""Progress of a running load test, for a human at a terminal or for a caller's callback.

A ten-minute soak that prints nothing looks hung; a progress line every second on stderr (only when stderr is
a terminal, so CI logs and captured pytest output stay clean) says it is alive and whether it keeps up.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TextIO

__all__ = ["ProgressCallback", "ProgressOption", "ProgressSnapshot", "TerminalProgress", "resolve_progress"]


@dataclass(frozen=True)
class ProgressSnapshot:
    """Counters of a run so far; ``planned_s`` is ``None`` when the run has no fixed length."""

    elapsed_s: float
    planned_s: float | None
    offered: int
    completed: int
    errors: int
    in_flight: int
    late_starts: int
    dropped_starts: int
    final: bool = False

    def fraction_done(self) -> float | None:
        if not self.planned_s:
            return None
        return min(1.0, self.elapsed_s / self.planned_s)


ProgressCallback = Callable[[ProgressSnapshot], None]
ProgressOption = ProgressCallback | Literal["auto"] | None


class TerminalProgress:
    """Rewrites one status line on ``stream`` each second and ends it with a newline when the run ends."""

    def __init__(self, stream: TextIO | None = None, label: str = "load") -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._label = label
        self._last_completed = 0
        self._last_elapsed = 0.0

    def __call__(self, snapshot: ProgressSnapshot) -> None:
        span = snapshot.elapsed_s - self._last_elapsed
        rate = (snapshot.completed - self._last_completed) / span if span > 0 else 0.0
        self._last_completed, self._last_elapsed = snapshot.completed, snapshot.elapsed_s
        planned = f"/{snapshot.planned_s:.0f}" if snapshot.planned_s else ""
        line = (
            f"\r[{self._label}] {snapshot.elapsed_s:6.1f}{planned} s  completed {snapshot.completed:>10,}"
            f"  {rate:>9,.0f}/s  in flight {snapshot.in_flight:>6,}  errors {snapshot.errors:>6,}"
            f"  late {snapshot.late_starts:>6,}  dropped {snapshot.dropped_starts:>6,}"
        )
        self._stream.write(line + ("\n" if snapshot.final else ""))
        self._stream.flush()


def resolve_progress(option: ProgressOption, label: str = "load") -> ProgressCallback | None:
    """``"auto"`` means a :class:`TerminalProgress` when stderr is a terminal, else nothing."""
    if option is None:
        return None
    if option == "auto":
        isatty = getattr(sys.stderr, "isatty", None)
        return TerminalProgress(sys.stderr, label) if isatty is not None and isatty() else None
    if callable(option):
        return option
    raise TypeError(f"progress must be a callable, 'auto' or None, got {option!r}")
