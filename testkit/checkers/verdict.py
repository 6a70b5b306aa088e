"""What a checker concludes: counts per invariant and the offending events, capped so verdicts stay small."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = ["Verdict", "VerdictBuilder", "Violation", "ViolationKind"]


class ViolationKind(StrEnum):
    LOST = "lost"  # an acknowledged write is missing and nothing written after it survived
    HOLE = "hole"  # something is missing while later events are present (acked write or sequence gap)
    DUPLICATE = "duplicate"  # one event id recovered more than once
    REORDERED = "reordered"  # recovered order contradicts real time: acked before the other was invoked
    AGGREGATE_ORDER = "aggregate_order"  # an aggregate's versions do not increase along the log
    SEQUENCE_ORDER = "sequence_order"  # sequence numbers not strictly increasing in the recovered log
    SEQUENCE_MISMATCH = "sequence_mismatch"  # recovered under another sequence than the one acknowledged
    PHANTOM = "phantom"  # recovered event nobody wrote
    CORRUPTED = "corrupted"  # content digest differs from what was written
    FAILED_WRITE_PRESENT = "failed_write_present"  # a write the store refused is in the log anyway
    TORN_BATCH = "torn_batch"  # part of a batch survived, part did not


@dataclass(frozen=True, slots=True)
class Violation:
    kind: ViolationKind
    event_ids: tuple[str, ...] = ()
    sequences: tuple[int, ...] = ()
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "event_ids": list(self.event_ids), "sequences": list(self.sequences),
                "detail": self.detail}


@dataclass(frozen=True, slots=True)
class Verdict:
    """``ok`` is True when no invariant is violated. ``violations`` keeps the first examples of each kind;
    ``violation_counts`` has the true totals. Losses inside ranges the store itself declared lost are
    listed in ``declared_losses``: reported, never hidden, but not violations unless the caller says so."""

    ok: bool
    counts: Mapping[str, int]
    violation_counts: Mapping[str, int]
    violations: tuple[Violation, ...]
    declared_losses: tuple[Violation, ...] = ()
    declared_loss_count: int = 0

    def of_kind(self, kind: ViolationKind | str) -> tuple[Violation, ...]:
        return tuple(v for v in self.violations if v.kind == kind)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "counts": dict(self.counts),
            "violation_counts": dict(self.violation_counts),
            "violations": [v.to_dict() for v in self.violations],
            "declared_losses": [v.to_dict() for v in self.declared_losses],
            "declared_loss_count": self.declared_loss_count,
        }

    def summary(self) -> str:
        """One line a person reads in a test failure or a terminal table."""
        found = ", ".join(f"{k}={n}" for k, n in self.violation_counts.items() if n)
        head = "OK" if self.ok else f"VIOLATED ({found})"
        keys = ("acknowledged", "acknowledged_present", "unknown_present", "unknown_absent", "recovered")
        figures = " ".join(f"{k}={self.counts.get(k, 0)}" for k in keys)
        cut_off = self.counts.get("no_outcome_present", 0) + self.counts.get("no_outcome_absent", 0)
        cut_off_text = (f" (of the unknown, {cut_off} never got an answer: present={self.counts['no_outcome_present']}"
                        f" absent={self.counts['no_outcome_absent']})") if cut_off else ""
        declared = f" declared_losses={self.declared_loss_count}" if self.declared_loss_count else ""
        return f"{head}: {figures}{cut_off_text}{declared}"


@dataclass(slots=True)
class VerdictBuilder:
    """Collects violations with a per-kind cap while counting every one."""

    max_examples: int = 50
    counts: dict[str, int] = field(default_factory=dict)
    _totals: dict[ViolationKind, int] = field(default_factory=lambda: {k: 0 for k in ViolationKind})
    _examples: list[Violation] = field(default_factory=list)
    _declared: list[Violation] = field(default_factory=list)
    _declared_total: int = 0

    def add(self, kind: ViolationKind, event_ids: tuple[str, ...] = (), sequences: tuple[int, ...] = (),
            detail: str = "") -> None:
        self._totals[kind] += 1
        if self._totals[kind] <= self.max_examples:
            self._examples.append(Violation(kind, event_ids, sequences, detail))

    def count(self, kind: ViolationKind, n: int) -> None:
        """Count ``n`` more violations of ``kind`` without examples (when there are too many to list)."""
        self._totals[kind] += n

    def declare(self, kind: ViolationKind, event_ids: tuple[str, ...] = (), sequences: tuple[int, ...] = (),
                detail: str = "") -> None:
        self._declared_total += 1
        if self._declared_total <= self.max_examples:
            self._declared.append(Violation(kind, event_ids, sequences, detail))

    def total(self, kind: ViolationKind) -> int:
        return self._totals[kind]

    def build(self, *, declared_are_violations: bool = False) -> Verdict:
        violated = any(self._totals.values()) or (declared_are_violations and self._declared_total > 0)
        return Verdict(
            ok=not violated,
            counts=dict(self.counts),
            violation_counts={k.value: n for k, n in self._totals.items()},
            violations=tuple(self._examples),
            declared_losses=tuple(self._declared),
            declared_loss_count=self._declared_total,
        )
