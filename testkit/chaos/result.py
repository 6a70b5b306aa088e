"""What a fault campaign returns: the matrix tally, one message per failing check, and per attempt whether it caught a loss.

Tests assert on it in one of two ways (see :mod:`testkit.chaos.expectations`): a configuration that
claims to be safe must come out clean; one declared *expected to lose writes* must be caught.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from testkit.chaos.judging import HISTORY_INVARIANTS, Judgement, Tally
from testkit.op_timeline import OpTimelineBuilder

__all__ = ["CampaignResult", "ChaosFailure"]


class ChaosFailure(AssertionError):
    """A campaign's verdict: an invariant broke, a fault was not proven, or an expected loss was not caught."""


@dataclass
class CampaignResult:
    """``caught[i]``: attempt ``i`` found a violation not seen before (a new lost event, a failing case).

    ``timeline`` collects the campaign's fault windows and judged recoveries for the report's picture of it
    (campaigns feed it where they already have the facts; :meth:`record_into` writes it once it has
    operations to draw: a judged recovery or an in-process history).
    """

    tally: Tally
    failures: list[str] = field(default_factory=list)
    caught: list[bool] = field(default_factory=list)
    last: Judgement | None = None
    lost_ids: set[str] = field(default_factory=set)
    faults: list[dict[str, Any]] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    verdicts: list[tuple[str, Any]] = field(default_factory=list)
    timeline: OpTimelineBuilder = field(default_factory=OpTimelineBuilder)
    injected: int = 0  # calls strace failed on purpose (``inject``), as the trace shows them
    unmet_needs: list[str] = field(default_factory=list)  # what the campaign had to exercise and did not
    #: Why the fault cannot be injected into this configuration at all (it never makes the call the fault
    #: fails); a test skips with it rather than judging a fault that never happened.
    not_applicable: str | None = None

    @classmethod
    def from_checks(cls, fault_kind: str, sut: str, *, cases: int, proven: int, failures: list[str]) -> CampaignResult:
        """A campaign that judged itself (its own checks, not one verdict per recovery): every history
        invariant judged, each failing check counted against ``recovers``, caught when any check failed."""
        tally = Tally(fault_kind[:24], sut, cases=cases, proven=proven)
        tally.judged_ok(*HISTORY_INVARIANTS)
        tally.violated("recovers", len(failures))
        return cls(tally, failures=list(failures), caught=[bool(failures)])

    def fault(self, kind: str, proven: bool, detail: str = "", window: tuple[float, float] | None = None) -> None:
        """A fault's proof, for the results' fault list (the tally counts cases; this says what happened)."""
        self.faults.append({"kind": kind, "proven": bool(proven), "detail": detail, "window": window})

    def record_into(self, recorder: Any) -> None:
        """Write the matrix cells, the faults and the parameters into a test's ``testkit_record``."""
        self.tally.record(recorder)
        for fault in self.faults:
            recorder.fault(fault["kind"], fault["proven"], fault["detail"], fault["window"])
        for checker, verdict in self.verdicts:
            recorder.verdict(checker, verdict)
        recorder.parameters.update(self.parameters)
        if self.timeline.cycles or self.timeline.history is not None:  # operations to draw
            self.timeline.record(recorder)

    def draw_from_journals(self, faults: Sequence[Any], journal_dir: str, label: str) -> None:
        """The picture of a campaign judged without per-crash cycles (restarts, snapshots): its crashes as fault
        windows over every incarnation's journalled operations."""
        from testkit.faults.workload import load_history  # the workload driver imports the kit's heavy parts

        for record in faults:
            self.timeline.fault(record, label)
        if journal_dir:
            self.timeline.history = load_history(journal_dir)

    def judged(self, case: int, judgement: Judgement, damage: list[dict[str, object]], recovered: Any = None,
               journal_dir: str | None = None) -> None:
        """Record one check after a crash: the invariants it broke and whether it found losses not seen before.

        ``recovered`` (what recovery read back) and ``journal_dir`` (the journals judged) feed the timeline."""
        self.timeline.cycle(judgement, recovered, journal_dir)
        self.last = judgement
        self.tally.add(judgement)
        self.tally.judged_ok("recovers")
        lost = set(judgement.lost_event_ids())
        self.caught.append(bool(lost - self.lost_ids))
        self.lost_ids |= lost
        if damage:
            self.tally.violated("recovers")
            self.failures.append(f"case {case}: recovery reported damage after a crash: {damage[:3]}")
        if not judgement.ok:
            self.failures.append(f"case {case}: {judgement.describe()}")

    def need(self, met: bool, what: str) -> None:
        """A precondition for the verdict to mean anything (a torn tail, a retry, a refused append...).

        A clean run that never exercised what it judges proves nothing, so :func:`~testkit.chaos.settle`
        fails on an unmet need with ``what`` as the reason."""
        if not met:
            self.unmet_needs.append(what)

    def require_needs(self, seed: int, label: str = "") -> None:
        if self.unmet_needs:
            raise ChaosFailure(f"seed {seed}: {label + ': ' if label else ''}the campaign proved nothing: "
                               + "; ".join(self.unmet_needs))

    def problem(self, message: str, invariant: str | None = None) -> None:
        """A failing check outside the history verdict (a refused open, an untyped error, no resume)."""
        self.failures.append(message)
        if invariant:
            self.tally.violated(invariant)

    @property
    def attempts(self) -> int:
        return len(self.caught) or self.tally.cases

    @property
    def catches(self) -> int:
        return sum(self.caught)

    @property
    def catch_rate(self) -> float:
        return self.catches / self.attempts if self.attempts else 0.0

    def require_clean(self, seed: int, label: str = "") -> None:
        if self.failures:
            raise ChaosFailure(f"seed {seed}: {label + ': ' if label else ''}{len(self.failures)} failing checks:\n"
                               + "\n".join(self.failures[:8]))
