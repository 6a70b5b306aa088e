"""Turning checker verdicts into the fault x invariant matrix, and failure messages a person can act on.

Every chaos test judges its runs with :func:`testkit.checkers.check_durability`; this module maps
each kind of violation onto the invariants the plugin's matrix shows, tallies cases per fault kind,
and records them once per test, so that no test can forget a cell or count one twice.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from testkit.adapters import AdapterError
from testkit.chaos.reader_process import ReaderDied, ReaderProcess
from testkit.checkers import History, Verdict, ViolationKind, check_durability
from testkit.checkers.history import OK
from testkit.plugin import INVARIANTS  # the matrix columns, in the order the summary and the report use

__all__ = [
    "INVARIANTS",
    "Judgement",
    "Tally",
    "acked_inside",
    "is_store_generated",
    "judge",
]


#: The checker's violation kinds, by the invariant each one breaks.
_INVARIANT_OF: Mapping[ViolationKind, tuple[str, ...]] = {
    ViolationKind.LOST: ("no_lost_ack",),
    ViolationKind.HOLE: ("prefix_no_holes",),
    ViolationKind.TORN_BATCH: ("prefix_no_holes",),
    ViolationKind.DUPLICATE: ("no_duplicate",),
    ViolationKind.REORDERED: ("order",),
    ViolationKind.AGGREGATE_ORDER: ("order",),
    ViolationKind.SEQUENCE_ORDER: ("order",),
    ViolationKind.SEQUENCE_MISMATCH: ("order",),
    ViolationKind.PHANTOM: ("no_phantom",),
    ViolationKind.CORRUPTED: ("no_phantom",),
    ViolationKind.FAILED_WRITE_PRESENT: ("no_phantom",),
}
HISTORY_INVARIANTS = ("no_lost_ack", "no_duplicate", "order", "no_phantom", "prefix_no_holes")


def is_store_generated(event: Any) -> bool:
    """Events a store writes by itself (lighthouse records each damaged range it finds as one)."""
    return getattr(event, "event_type", None) == "corruption_detected"


def acked_inside(history: History, ranges: Iterable[Sequence[int]]) -> list[str]:
    """Acknowledged events whose acknowledged sequence lies in ``ranges`` (a loss the store declared)."""
    spans = [(int(r[0]), int(r[1])) for r in ranges]
    if not spans:
        return []
    cols = history.columns()
    found = []
    for op, status in enumerate(cols.status):
        seqs = cols.sequences[op]
        if status != OK or seqs is None:
            continue
        for event_id, seq in zip(cols.event_ids[op], seqs):
            if any(lo <= seq <= hi for lo, hi in spans):
                found.append(event_id)
    return found


@dataclass(frozen=True)
class Judgement:
    """A verdict plus what the suite adds: losses the store declared, and the invariants broken."""

    verdict: Verdict
    declared_acked_losses: tuple[str, ...]
    broken: Mapping[str, int]
    missing_acked: frozenset[str] = frozenset()

    @property
    def ok(self) -> bool:
        return not any(self.broken.values())

    def lost_event_ids(self) -> list[str]:
        """Every acknowledged event missing from the recovered log (uncapped, unlike the verdict's examples)."""
        return sorted(self.missing_acked)

    def describe(self, limit: int = 8) -> str:
        parts = [self.verdict.summary()]
        if self.declared_acked_losses:
            parts.append(f"acknowledged events inside ranges the store declared lost: "
                         f"{list(self.declared_acked_losses[:limit])}")
        for violation in self.verdict.violations[:limit]:
            parts.append(f"  {violation.kind.value}: ids={list(violation.event_ids[:3])} "
                         f"seqs={list(violation.sequences[:3])} {violation.detail}")
        return "\n".join(parts)


def judge(
    history: History,
    recovered: Iterable[Any],
    *,
    voided: Iterable[Sequence[int]] = (),
    declared_lost: Iterable[Sequence[int]] = (),
    losses_allowed: bool = False,
) -> Judgement:
    """Check ``recovered`` against ``history``.

    ``voided``: sequences the store says never held events (failed writes); gaps there are legal.
    ``declared_lost``: sequences the store reports lost to corruption. After a crash or power cut a
    correct store declares nothing, so an acknowledged event inside such a range is a lost ack unless
    ``losses_allowed`` (corruption tests, where declaring the loss is the right answer).
    """
    recovered = list(recovered)
    present = {event.event_id for event in recovered}
    cols = history.columns()
    missing = frozenset(
        event_id for op, status in enumerate(cols.status) if status == OK
        for event_id in cols.event_ids[op] if event_id not in present
    )
    voided_list = [tuple(r) for r in voided]
    lost_list = [tuple(r) for r in declared_lost]
    verdict = check_durability(history, recovered, voided=[*voided_list, *lost_list],
                               store_generated=is_store_generated)
    declared = tuple(acked_inside(history, lost_list)) if not losses_allowed else ()
    broken = {name: 0 for name in HISTORY_INVARIANTS}
    for kind, count in verdict.violation_counts.items():
        for name in _INVARIANT_OF.get(ViolationKind(kind), ()):
            broken[name] += count
    broken["no_lost_ack"] += len(declared)
    # A missing acknowledged write in the middle is a hole and a lost acknowledgement at once.
    broken["no_lost_ack"] += sum(1 for v in verdict.violations if v.kind == ViolationKind.HOLE and v.event_ids)
    return Judgement(verdict, declared, broken, missing)


@dataclass
class Tally:
    """Per fault kind: cases run, faults proven, and cases that broke each invariant."""

    fault_kind: str
    sut: str
    cases: int = 0
    proven: int = 0
    violations: dict[str, int] = field(default_factory=dict)
    judged: set[str] = field(default_factory=set)

    def case(self, proven: bool) -> None:
        self.cases += 1
        self.proven += int(proven)

    def judged_ok(self, *invariants: str) -> None:
        self.judged.update(invariants)

    def violated(self, invariant: str, count: int = 1) -> None:
        self.judged.add(invariant)
        if count:
            self.violations[invariant] = self.violations.get(invariant, 0) + count

    def add(self, judgement: Judgement) -> None:
        """Count one judged run: each broken invariant once."""
        self.judged.update(judgement.broken)
        for name, count in judgement.broken.items():
            if count:
                self.violations[name] = self.violations.get(name, 0) + 1

    def record(self, recorder: Any) -> None:
        for invariant in INVARIANTS:
            if invariant in self.judged:
                recorder.chaos(self.fault_kind, invariant, cases=self.cases, proven=self.proven,
                               violations=self.violations.get(invariant, 0), sut=self.sut)

    def total_violations(self) -> int:
        return sum(self.violations.values())


def recover_and_judge(adapter: Any, data_dir: Any, journal_dir: Any, *, reader: ReaderProcess | None = None
                      ) -> tuple[Judgement, Any, list[dict[str, Any]]]:
    """Recover the store, judge it against every journal so far; also return damage other than a torn tail.

    After a crash or a power cut a correct store finds at most a torn tail: anything else it reports
    means recovery mistook a crash for corruption (or really lost data). Recovery runs in ``reader``'s child
    process (a campaign passes one for all its checks; without one a child is started for this call): a store
    that kills its reader with a signal (LMDB's map past a truncated file is SIGBUS), or refuses to open or read
    with a typed error, has nothing readable: every acknowledged event counts as lost and the damage list says
    why. Anything else (an untyped exception, a reader that exited or hung) is raised: a harness failure must
    never pass as a caught loss.
    """
    from testkit.chaos.preload import modules_of
    from testkit.faults.workload import Recovered, load_history, recover

    if reader is None:
        with ReaderProcess(modules_of(adapter)) as own:
            return recover_and_judge(adapter, data_dir, journal_dir, reader=own)
    started = time.monotonic()
    try:
        recovered = reader.call(recover, adapter, str(data_dir))
    except ReaderDied as death:
        if "killed by" not in str(death):  # an exit or a hang is the harness's failure, never the store's loss
            raise
        detail = f"recovering the store killed its reading process ({death}): nothing it holds can be read"
        recovered = Recovered([], {"damage": [{"kind": "reader_died", "detail": detail}]},
                              time.monotonic() - started)
    except AdapterError as refusal:  # typed: the store itself refuses; anything untyped stays an error of the test
        detail = f"the store could not be opened and read after the fault: {refusal.code}: {refusal}"
        recovered = Recovered([], {"damage": [{"kind": "recovery_failed", "detail": detail}]},
                              time.monotonic() - started)
    history = load_history(journal_dir)
    judgement = judge(history, recovered.events, voided=recovered.voided_ranges(),
                      declared_lost=recovered.lost_ranges())
    damage = [d for d in (recovered.health or {}).get("damage", []) if d.get("kind") != "torn_tail"]
    return judgement, recovered, damage
