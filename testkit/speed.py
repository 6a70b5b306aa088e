"""Speed lines are judged by benchmarks, never by a correctness run.

A test that measures speed (an ADR line, a ratio to a peer) always records its figures; whether a miss fails
the test depends on the run: ``make perf`` / ``make load`` / ``make soak`` judge, ``make test`` (the ``ci``
selection) only records, because a busy CI machine is slow, not wrong. A miss that is not judged is still kept
in the test's results (``speed_lines_not_judged``) so nothing is hidden.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SpeedLines", "judge_by_default"]


def judge_by_default(markexpr: str | None) -> bool:
    """Judge speed unless the run is the ``ci`` selection (``-m ci`` or an expression naming ``ci``)."""
    words = (markexpr or "").replace("(", " ").replace(")", " ").split()
    return "ci" not in words


@dataclass
class SpeedLines:
    """Collects speed-line misses of one test; :meth:`check` fails only when this run judges speed."""

    judged: bool
    record: Any = None
    misses: list[str] = field(default_factory=list)

    def expect(self, met: bool, message: str) -> None:
        """One speed line: kept as a miss when not ``met``."""
        if not met:
            self.misses.append(message)

    def check(self, misses: Iterable[str] = ()) -> None:
        """Fail on every miss collected so far (plus ``misses``) when judging; otherwise record them."""
        self.misses.extend(misses)
        if not self.misses:
            return
        if self.judged:
            raise AssertionError("speed lines missed:\n  " + "\n  ".join(self.misses))
        if self.record is not None:
            self.record.parameters["speed_lines_not_judged"] = list(self.misses)
