"""One row of the findings table: a configuration under one fault, and what the checker counted."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

__all__ = ["OTHER_KINDS", "WRONG_READ_KINDS", "Finding", "open_seconds", "percentile_50"]

#: Checker violation kinds that mean "a read returned something other than what was acknowledged".
WRONG_READ_KINDS = ("corrupted", "phantom", "sequence_mismatch", "failed_write_present")
#: Kinds that break order or atomicity without losing or falsifying an event.
OTHER_KINDS = ("hole", "torn_batch", "reordered", "aggregate_order", "sequence_order")


@dataclass(frozen=True)
class Finding:
    """What one campaign found; ``expected_loss`` is the store's documented contract for this fault."""

    configuration: str
    fault: str
    expected_loss: bool
    cases: int
    proven: int
    acknowledged: int
    lost_acked: int
    checks: int
    checks_with_new_loss: int
    duplicates: int
    wrong_reads: int
    other_violations: int
    damage_detected: int
    recovery_p50_s: float | None
    recovery_max_s: float | None
    seconds: float
    error: str = ""

    @property
    def verdict(self) -> str:
        if self.error:
            return f"campaign aborted: {self.error}"
        if self.proven < self.cases:
            return f"INCONCLUSIVE: {self.cases - self.proven} faults not proven"
        harmed = self.lost_acked or self.duplicates or self.wrong_reads or self.other_violations
        if self.expected_loss:
            return "known unsafe: caught" if harmed else "known unsafe: NOT caught"
        if self.acknowledged == 0:
            return "INCONCLUSIVE: nothing acknowledged"
        return "VIOLATION" if harmed or self.damage_detected else "clean"


def open_seconds(journal_root: Path) -> list[float]:
    """How long each worker took to open the store (recovery after the previous fault), from its marker."""
    found = []
    for marker in sorted(journal_root.rglob("opened-*.json")):
        try:
            found.append(float(json.loads(marker.read_text())["open_seconds"]))
        except (OSError, ValueError, KeyError):
            continue
    return found


def percentile_50(values: list[float]) -> float | None:
    return statistics.median(values) if values else None
