"""A fault campaign's story on one clock: every operation, every fault window, every recovery, every offending op.

Campaigns already journal each write (:class:`~testkit.checkers.History`) and stamp each fault on the monotonic
clock (:class:`~testkit.faults.records.FaultRecord`); this module joins the two into the compact
:class:`~testkit.results.OpTimeline` record the report draws (latency and throughput over time with the fault
windows shaded, recovery per cycle, the history around a violation). A campaign makes one builder, feeds it with
:meth:`OpTimelineBuilder.fault` and :meth:`OpTimelineBuilder.cycle` where it already has the facts, and the test
hands it to ``testkit_record`` with :meth:`OpTimelineBuilder.record`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from testkit.checkers.history import FAIL, OK, UNKNOWN, History
from testkit.results import OpTimeline

__all__ = ["MAX_OPS", "OpTimelineBuilder", "latency_bins"]

#: Operations kept per campaign (every failed and unknown one, an even sample of the acknowledged ones).
MAX_OPS = 4000
#: Failing checks explained per campaign (each with its offending events and their history).
MAX_EXPLAINED = 5
#: Offending events named per explained check.
MAX_NAMED = 20
#: Throughput and latency bins per campaign, about.
TARGET_BINS = 120
_ABANDONED = "no outcome recorded"


@dataclass(slots=True)
class _Check:
    at: float  # monotonic seconds
    label: str
    violations: list[dict[str, Any]]
    counts: dict[str, int]
    missing: frozenset[str]


@dataclass(slots=True)
class OpTimelineBuilder:
    """Collects a campaign's faults and judged recoveries; builds its :class:`OpTimeline` and verdicts at the end."""

    faults: list[tuple[float, float, str]] = field(default_factory=list)
    cycles: list[tuple[float, float, int, int]] = field(default_factory=list)
    journal_dirs: list[str] = field(default_factory=list)
    checks: list[_Check] = field(default_factory=list)
    lost: set[str] = field(default_factory=set)
    failed_checks: int = 0
    #: An in-process campaign's own history (no journals): drawn instead of loading ``journal_dirs``.
    history: History | None = None
    #: ``read_back`` once :meth:`read_back` fed a cycle (see :attr:`~testkit.results.OpTimeline.cycle_kind`).
    cycle_kind: str = "recovery"

    def fault(self, record: Any, label: str | None = None) -> None:
        """A fault as injected (a :class:`~testkit.faults.records.FaultRecord` or its dict): its monotonic window."""
        if isinstance(record, dict):
            self.faults.append((float(record["mono_start"]), float(record["mono_end"]), label or str(record["kind"])))
            return
        self.faults.append((float(record.mono_start), float(record.mono_end), label or str(record.kind)))

    def cycle(self, judgement: Any, recovered: Any = None, journal_dir: str | os.PathLike[str] | None = None) -> None:
        """One recovery judged (a suite ``Judgement``): recovery time, acknowledged vs recovered, violations."""
        now = time.monotonic()
        counts = dict(judgement.verdict.counts)
        acknowledged = int(counts.get("acknowledged", 0))
        present = int(counts.get("acknowledged_present", acknowledged - len(judgement.missing_acked)))
        recovery_s = float(getattr(recovered, "open_seconds", 0.0) or 0.0)
        self.cycles.append((now, recovery_s, acknowledged, present))
        if journal_dir is not None and str(journal_dir) not in self.journal_dirs:
            self.journal_dirs.append(str(journal_dir))
        self.lost |= set(judgement.missing_acked)
        self.failed_checks += not judgement.ok
        if not judgement.ok and len(self.checks) < MAX_EXPLAINED:
            violations = [v.to_dict() for v in judgement.verdict.violations[:MAX_NAMED]]
            declared = list(judgement.declared_acked_losses[:MAX_NAMED])
            if declared:
                violations.append({"kind": "declared_lost", "event_ids": declared, "sequences": [],
                                   "detail": "acknowledged events inside a range the store declared lost"})
            self.checks.append(_Check(now, f"check {len(self.cycles)}", violations,
                                      {**counts, **{k: int(n) for k, n in judgement.broken.items() if n}},
                                      frozenset(judgement.missing_acked)))

    def read_back(self, started: float, seconds: float, acknowledged: int, intact: int) -> None:
        """One read-back judged without a history (a damaged copy opened and read whole, as the corruption
        campaigns do): when it started (monotonic), how long it took, and how many of the ``acknowledged``
        events came back exactly as acknowledged."""
        self.cycles.append((started, seconds, acknowledged, intact))
        self.cycle_kind = "read_back"

    def build(self) -> tuple[OpTimeline, list[dict[str, Any]]]:
        """The timeline and one verdict document per explained check (the events named, when each was
        invoked and acknowledged, by which worker, and what recovery read back)."""
        history = self.history if self.history is not None else _load(self.journal_dirs)
        cols = history.columns()
        invoked = np.asarray(cols.invoked_at, dtype=np.float64) / 1e9
        completed = np.asarray(cols.completed_at, dtype=np.float64) / 1e9
        status = np.frombuffer(bytes(cols.status), dtype=np.uint8) if len(cols.status) else np.zeros(0, np.uint8)
        starts = [*invoked[:1].tolist(), *(start for start, _, _ in self.faults), *(c[0] for c in self.cycles)]
        origin = min(starts) if starts else 0.0
        latency = completed - invoked
        abandoned = np.zeros(len(status), dtype=bool)
        for op in np.flatnonzero(status == UNKNOWN):
            error = history[int(op)].error or ""
            abandoned[op] = error.startswith(_ABANDONED)  # the worker died mid-call: no latency to show
        workers = sorted(set(cols.client_ids), key=_natural)
        worker_of = {w: i for i, w in enumerate(workers)}
        lanes = np.asarray([worker_of[c] for c in cols.client_ids], dtype=np.int64)
        kept = _sample(status, MAX_OPS)
        ops = [[round(float(invoked[i] - origin), 4),
                None if abandoned[i] or completed[i] < 0 else round(float(latency[i]), 6),
                int(status[i]), int(lanes[i])] for i in kept]
        bins, bin_s = latency_bins(invoked - origin, latency, status, abandoned)
        where = _locate(history)
        marks: list[list[Any]] = []
        verdicts = []
        for check in self.checks:
            explained = [_explain(v, where, check.missing, invoked, completed, status, lanes, workers, origin)
                         for v in check.violations]
            for violation in explained:
                for op in violation.pop("_ops", []):
                    end = completed[op] if completed[op] > 0 else invoked[op]
                    marks.append([round(float(invoked[op] - origin), 4), round(float(end - origin), 4),
                                  int(lanes[op]), str(violation["kind"])])
            verdicts.append({"checker": f"history ({check.label}, t={check.at - origin:.2f} s)", "ok": False,
                             "counts": check.counts, "violations": explained})
        timeline = OpTimeline(
            ops=ops, workers=workers, bins=bins, bin_s=bin_s,
            faults=[[round(s - origin, 4), round(max(e, s) - origin, 4), label] for s, e, label in self.faults],
            cycles=[[round(t - origin, 4), round(r, 6), a, p] for t, r, a, p in self.cycles],
            marks=marks[: MAX_EXPLAINED * MAX_NAMED], total_ops=len(status), cycle_kind=self.cycle_kind,
        )
        return timeline, verdicts

    def record(self, recorder: Any) -> None:
        """Hand the timeline and the explained violations to a ``testkit_record`` fixture."""
        timeline, verdicts = self.build()
        recorder.op_timeline(timeline)
        if self.cycles:  # the campaign's totals first: what the verdict line of the report counts
            _, _, acknowledged, present = self.cycles[-1]
            recorder.verdict("history (whole campaign)", {
                "ok": not self.failed_checks and not self.lost,
                "counts": {"checks": len(self.cycles), "failed_checks": self.failed_checks,
                           "acknowledged": acknowledged,
                           "acknowledged_present": present, "lost_acknowledged": len(self.lost)}})
        for verdict in verdicts:
            recorder.verdict(verdict["checker"], verdict)


def _load(journal_dirs: Sequence[str]) -> History:
    from testkit.faults.workload import journals  # the workload driver imports the kit's heavy parts

    found = [path for directory in journal_dirs for path in journals(directory)]
    return History.load(*found) if found else History()


def _natural(name: str) -> tuple[Any, ...]:
    """``i2-c0`` before ``i10-c0``."""
    import re

    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def _sample(status: np.ndarray, limit: int) -> list[int]:
    """Every operation that did not succeed, and acknowledged ones evenly spread up to ``limit`` in all."""
    others = np.flatnonzero(status != OK)
    acked = np.flatnonzero(status == OK)
    room = max(0, limit - len(others))
    if len(acked) > room:
        acked = acked[np.linspace(0, len(acked) - 1, room).astype(np.int64)] if room else acked[:0]
    return sorted({*others[:limit].tolist(), *acked.tolist()})


def latency_bins(t: np.ndarray, latency: np.ndarray, status: np.ndarray,
                 abandoned: np.ndarray) -> tuple[list[list[Any]], float]:
    """``[t, ok, failed, p50_s, p99_s]`` per bin over every operation (seconds from the origin, latency in
    seconds, history status codes; ``abandoned``: unknown because the worker died, not counted as errors);
    p50/p99 of the acknowledged ones."""
    if not len(t):
        return [], 1.0
    span = float(t.max()) if len(t) else 0.0
    bin_s = _nice(max(span / TARGET_BINS, 0.01))
    index = np.floor(t / bin_s).astype(np.int64)
    rows = []
    for b in range(int(index.max()) + 1):
        inside = index == b
        ok = inside & (status == OK)
        failed = inside & ((status == FAIL) | ((status == UNKNOWN) & ~abandoned))
        p50 = p99 = None
        if ok.any():
            values = latency[ok]
            p50, p99 = (round(float(v), 6) for v in np.percentile(values, [50, 99], method="inverted_cdf"))
        rows.append([round(b * bin_s, 4), int(ok.sum()), int(failed.sum()), p50, p99])
    return rows, bin_s


def _nice(value: float) -> float:
    """The next 1, 2 or 5 times a power of ten: bins of 0.05 s or 2 s, not 0.0437 s."""
    exponent = np.floor(np.log10(value))
    for step in (1.0, 2.0, 5.0, 10.0):
        if step * 10**exponent >= value:
            return float(step * 10**exponent)
    return float(10 ** (exponent + 1))


def _locate(history: History) -> dict[str, tuple[int, int]]:
    """Event id -> (operation, position in it)."""
    return {event_id: (op, k) for op, ids in enumerate(history.columns().event_ids) for k, event_id in enumerate(ids)}


def _explain(violation: dict[str, Any], where: dict[str, tuple[int, int]], missing: Iterable[str],
             invoked: np.ndarray, completed: np.ndarray, status: np.ndarray, lanes: np.ndarray,
             workers: Sequence[str], origin: float) -> dict[str, Any]:
    """The checker's violation plus, per named event, what the history says about it and what was read back."""
    missing = set(missing)
    events = []
    ops = []
    for event_id in list(violation.get("event_ids") or [])[:MAX_NAMED]:
        located = where.get(event_id)
        if located is None:
            events.append({"event_id": event_id, "written": "never (no client wrote it)"})
            continue
        op, _ = located
        ops.append(op)
        acked = int(status[op]) == OK
        events.append({
            "event_id": event_id,
            "worker": workers[int(lanes[op])],
            "invoked_s": round(float(invoked[op] - origin), 4),
            "answer": {OK: "acknowledged", FAIL: "refused", UNKNOWN: "unknown"}.get(int(status[op]), "pending"),
            "answered_s": round(float(completed[op] - origin), 4) if completed[op] > 0 else None,
            "read_back": "absent" if event_id in missing else ("present" if acked else "present (not acknowledged)"),
        })
    return {**violation, "events": events, "_ops": sorted(set(ops))}
