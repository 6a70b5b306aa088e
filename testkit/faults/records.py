"""What an injector did and the evidence that it really happened.

A record carries two clocks: wall-clock epoch seconds (``t_start``/``t_end``, readable in a
results file and comparable across machines' logs) and the system-wide monotonic clock
(``mono_start``/``mono_end``, the clock of ``testkit.load`` timelines, comparable across
processes on this machine), so :meth:`FaultRecord.window` can shade a fault on a load timeline.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from testkit.faults.errors import FaultNotProven

__all__ = ["FaultClock", "FaultRecord"]


@dataclass(frozen=True, slots=True)
class FaultRecord:
    """One injected fault: what, whether it was observed, and when.

    ``proven`` is True only when the injector observed the fault's effect itself (an errno, a wait
    status, changed bytes, a line in the shim's log), never because a call merely returned.
    """

    kind: str
    proven: bool
    detail: str
    t_start: float
    t_end: float
    evidence: Mapping[str, Any] = field(default_factory=dict)
    mono_start: float = 0.0
    mono_end: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "evidence", MappingProxyType(dict(self.evidence)))

    @property
    def duration_s(self) -> float:
        return self.t_end - self.t_start

    def window(self, origin_monotonic: float) -> tuple[float, float]:
        """The fault's span in seconds after ``origin_monotonic`` (e.g. a load run's ``time.monotonic()`` start)."""
        return (self.mono_start - origin_monotonic, self.mono_end - origin_monotonic)

    def require(self) -> FaultRecord:
        """Return self, or raise :class:`FaultNotProven` so a test cannot judge a fault that never happened."""
        if not self.proven:
            raise FaultNotProven(self)
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "proven": self.proven,
            "detail": self.detail,
            "t_start": self.t_start,
            "t_end": self.t_end,
            "mono_start": self.mono_start,
            "mono_end": self.mono_end,
            "evidence": dict(self.evidence),
        }


@dataclass(slots=True)
class FaultClock:
    """Stamps the start of an injection so that the record's window covers the whole action."""

    t_start: float = field(default_factory=time.time)
    mono_start: float = field(default_factory=time.monotonic)

    def record(self, kind: str, proven: bool, detail: str, **evidence: Any) -> FaultRecord:
        return FaultRecord(kind, proven, detail, self.t_start, time.time(), evidence, self.mono_start, time.monotonic())
