"""One results schema for every suite: what ran, on what machine, what it measured and what the checkers said.

Every suite writes the same JSON document so that one report renderer and one regression comparer serve all of
them. The document carries raw samples and encoded HdrHistograms, not only summaries, because a regression gate
needs distributions to tell a real change from noise. The schema is documented in ``testkit/docs/results-schema.md``;
field names are stable, and a breaking change bumps :data:`SCHEMA_VERSION` so that an old reader fails loudly
instead of misreading a new file.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

from hdrh.histogram import HdrHistogram

from testkit.environment import FingerprintError, MachineFingerprint, machine_fingerprint

__all__ = [
    "CYCLE_KINDS",
    "RESULTS_KIND",
    "SCHEMA_VERSION",
    "ChaosMatrix",
    "FaultRecord",
    "MemoryRecord",
    "Metric",
    "OpTimeline",
    "ResultsSchemaError",
    "RunInfo",
    "RunResults",
    "Target",
    "TestRecord",
    "Timeline",
    "VerdictRecord",
    "check_schema_version",
    "load_results",
    "read_json",
    "write_json_atomically",
]

#: The version this module writes and the only one it reads.
SCHEMA_VERSION = 1
#: The ``kind`` tag that tells a results file from a baseline file.
RESULTS_KIND = "testkit-results"

Direction = Literal["lower", "higher"]
DIRECTIONS: frozenset[str] = frozenset({"lower", "higher"})
OUTCOMES: frozenset[str] = frozenset({"passed", "failed", "skipped", "error", "xfailed", "xpassed"})
RUN_VERDICTS: frozenset[str] = frozenset({"passed", "failed", "error", "interrupted", "unknown"})
TARGET_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": lambda value, bound: value <= bound,
    "<": lambda value, bound: value < bound,
    ">=": lambda value, bound: value >= bound,
    ">": lambda value, bound: value > bound,
    "==": lambda value, bound: value == bound,
}
MATRIX_STATUSES: frozenset[str] = frozenset({"pass", "fail", "skip", "not_run"})
#: Operation status codes in an :class:`OpTimeline` (the codes of :mod:`testkit.checkers.history`).
OP_OK, OP_FAIL, OP_UNKNOWN = 1, 2, 3


class ResultsSchemaError(ValueError):
    """A results document does not follow the schema; the message names the offending field."""


# --------------------------------------------------------------------------------------------- validation helpers

_T = TypeVar("_T")


def _field(document: Mapping[str, Any], key: str, where: str) -> Any:
    if not isinstance(document, Mapping):
        raise ResultsSchemaError(f"{where}: expected an object, got {type(document).__name__}")
    if key not in document:
        raise ResultsSchemaError(f"{where}.{key}: required field is missing")
    return document[key]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _number(value: Any, where: str) -> float:
    if not _is_number(value):
        raise ResultsSchemaError(f"{where}: expected a finite number, got {value!r}")
    return value  # type: ignore[no-any-return]


def _integer(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ResultsSchemaError(f"{where}: expected an integer, got {value!r}")
    return value


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ResultsSchemaError(f"{where}: expected a string, got {value!r}")
    return value


def _boolean(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ResultsSchemaError(f"{where}: expected true or false, got {value!r}")
    return value


def _choice(value: Any, allowed: frozenset[str], where: str) -> str:
    if value not in allowed:
        raise ResultsSchemaError(f"{where}: expected one of {sorted(allowed)}, got {value!r}")
    return value  # type: ignore[no-any-return]


def _optional(value: Any, convert: Callable[[Any, str], _T], where: str) -> _T | None:
    return None if value is None else convert(value, where)


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise ResultsSchemaError(f"{where}: expected a list, got {type(value).__name__}")
    return value


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ResultsSchemaError(f"{where}: expected an object, got {type(value).__name__}")
    return dict(value)


def _numbers(value: Any, where: str) -> list[float]:
    return [_number(item, f"{where}[{index}]") for index, item in enumerate(_list(value, where))]


def _integer_map(value: Any, where: str) -> dict[str, int]:
    return {name: _integer(number, f"{where}.{name}") for name, number in _object(value, where).items()}


def _timestamp(value: Any, where: str) -> str:
    text = _string(value, where)
    try:
        datetime.fromisoformat(text)
    except ValueError as error:
        raise ResultsSchemaError(f"{where}: expected an ISO 8601 timestamp, got {text!r}") from error
    return text


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


# ------------------------------------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class Target:
    """The pass line of a metric, e.g. ``Target("<=", 10.0)`` for p99 <= 10 ms."""

    op: str
    value: float

    def __post_init__(self) -> None:
        _choice(self.op, frozenset(TARGET_OPS), "target.op")
        _number(self.value, "target.value")

    def met_by(self, measured: float) -> bool:
        return TARGET_OPS[self.op](measured, self.value)

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, "value": self.value}

    @classmethod
    def from_dict(cls, document: Any, where: str = "target") -> Target:
        return cls(
            op=_choice(_field(document, "op", where), frozenset(TARGET_OPS), f"{where}.op"),
            value=_number(_field(document, "value", where), f"{where}.value"),
        )


@dataclass(slots=True)
class Metric:
    """One measured figure, with the raw samples or the encoded histogram it was summarised from.

    ``histogram`` is an HdrHistogram in its standard compressed base64 encoding (``HdrHistogram.encode()``).
    Its values are in ``histogram_unit`` when given (a ``LatencyRecorder`` records ``ns`` while ``value`` is often
    reported in ``ms``), else in ``unit``.
    """

    value: float
    unit: str
    direction: Direction
    samples: list[float] | None = None
    histogram: str | None = None
    target: Target | None = None
    histogram_unit: str | None = None

    def __post_init__(self) -> None:
        _number(self.value, "metric.value")
        _choice(self.direction, DIRECTIONS, "metric.direction")

    @property
    def target_met(self) -> bool | None:
        return None if self.target is None else self.target.met_by(self.value)

    def decoded_histogram(self) -> HdrHistogram | None:
        """The histogram, decoded; a damaged encoding raises :class:`ResultsSchemaError`."""
        if self.histogram is None:
            return None
        return _decode_histogram(self.histogram, "metric.histogram")

    def to_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = {"value": self.value, "unit": self.unit, "direction": self.direction}
        if self.samples is not None:
            document["samples"] = list(self.samples)
        if self.histogram is not None:
            document["histogram"] = self.histogram
        if self.histogram_unit is not None:
            document["histogram_unit"] = self.histogram_unit
        if self.target is not None:
            document["target"] = self.target.to_dict()
        return document

    @classmethod
    def from_dict(cls, document: Any, where: str = "metric") -> Metric:
        samples = document.get("samples") if isinstance(document, Mapping) else None
        histogram = document.get("histogram") if isinstance(document, Mapping) else None
        target = document.get("target") if isinstance(document, Mapping) else None
        if histogram is not None:
            _decode_histogram(_string(histogram, f"{where}.histogram"), f"{where}.histogram")
        return cls(
            value=_number(_field(document, "value", where), f"{where}.value"),
            unit=_string(_field(document, "unit", where), f"{where}.unit"),
            direction=_choice(_field(document, "direction", where), DIRECTIONS, f"{where}.direction"),  # type: ignore[arg-type]
            samples=None if samples is None else _numbers(samples, f"{where}.samples"),
            histogram=histogram,
            target=None if target is None else Target.from_dict(target, f"{where}.target"),
            histogram_unit=_optional(document.get("histogram_unit"), _string, f"{where}.histogram_unit"),
        )


def _decode_histogram(encoded: str, where: str) -> HdrHistogram:
    try:
        return HdrHistogram.decode(encoded)
    except Exception as error:  # hdrh raises assorted zlib/base64/struct errors on damaged input
        raise ResultsSchemaError(f"{where}: not a valid encoded HdrHistogram ({error})") from error


@dataclass(slots=True)
class Timeline:
    """Values over time: ``t`` in seconds since the test started, one list per series, ``None`` for a gap."""

    name: str
    t: list[float]
    series: dict[str, list[float | None]]
    units: dict[str, str] = field(default_factory=dict)
    #: Spans to shade that are not faults, on the same clock: ``[start, end, label]`` (e.g. a load burst).
    shaded: list[list[Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for column, values in self.series.items():
            if len(values) != len(self.t):
                raise ResultsSchemaError(
                    f"timeline {self.name!r}: series {column!r} has {len(values)} points but t has {len(self.t)}"
                )

    def to_dict(self) -> dict[str, Any]:
        document = {"name": self.name, "t": list(self.t), "series": {k: list(v) for k, v in self.series.items()},
                    "units": dict(self.units)}
        if self.shaded:
            document["shaded"] = [list(span) for span in self.shaded]
        return document

    @classmethod
    def from_dict(cls, document: Any, where: str = "timeline") -> Timeline:
        series_doc = _object(_field(document, "series", where), f"{where}.series")
        series: dict[str, list[float | None]] = {}
        for column, values in series_doc.items():
            series[column] = [
                _optional(value, _number, f"{where}.series.{column}[{index}]")
                for index, value in enumerate(_list(values, f"{where}.series.{column}"))
            ]
        units = _object(document.get("units", {}), f"{where}.units")
        try:
            return cls(
                name=_string(_field(document, "name", where), f"{where}.name"),
                t=_numbers(_field(document, "t", where), f"{where}.t"),
                series=series,
                units={k: _string(v, f"{where}.units.{k}") for k, v in units.items()},
                shaded=[_span(span, f"{where}.shaded[{i}]")
                        for i, span in enumerate(_list(document.get("shaded", []), f"{where}.shaded"))],
            )
        except ResultsSchemaError as error:
            raise ResultsSchemaError(f"{where}: {error}") from error


def _span(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list) or len(value) != 3:
        raise ResultsSchemaError(f"{where}: expected [start, end, label], got {value!r}")
    if _number(value[1], f"{where}[1]") < _number(value[0], f"{where}[0]"):
        raise ResultsSchemaError(f"{where}: ends before it starts: {value!r}")
    return [value[0], value[1], _string(value[2], f"{where}[2]")]


@dataclass(slots=True)
class FaultRecord:
    """A fault a test injected; ``proven`` says the test observed the fault take effect before judging."""

    kind: str
    proven: bool
    detail: str = ""
    window: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.window is not None and self.window[1] < self.window[0]:
            raise ResultsSchemaError(f"fault {self.kind!r}: window ends before it starts: {self.window}")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "proven": self.proven, "detail": self.detail,
                "window": None if self.window is None else list(self.window)}

    @classmethod
    def from_dict(cls, document: Any, where: str = "fault") -> FaultRecord:
        window_doc = document.get("window") if isinstance(document, Mapping) else None
        window: tuple[float, float] | None = None
        if window_doc is not None:
            bounds = _numbers(window_doc, f"{where}.window")
            if len(bounds) != 2:
                raise ResultsSchemaError(f"{where}.window: expected [t0, t1], got {window_doc!r}")
            window = (bounds[0], bounds[1])
        try:
            return cls(
                kind=_string(_field(document, "kind", where), f"{where}.kind"),
                proven=_boolean(_field(document, "proven", where), f"{where}.proven"),
                detail=_string(document.get("detail", ""), f"{where}.detail"),
                window=window,
            )
        except ResultsSchemaError as error:
            raise ResultsSchemaError(f"{where}: {error}") from error


@dataclass(slots=True)
class VerdictRecord:
    """What one checker concluded: ``counts`` such as ``{"acknowledged": 1000, "lost": 0}``."""

    checker: str
    ok: bool
    counts: dict[str, int] = field(default_factory=dict)
    violations: list[Any] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"checker": self.checker, "ok": self.ok, "counts": dict(self.counts),
                "violations": list(self.violations)}

    @classmethod
    def from_dict(cls, document: Any, where: str = "verdict") -> VerdictRecord:
        counts = _object(document.get("counts", {}) if isinstance(document, Mapping) else {}, f"{where}.counts")
        return cls(
            checker=_string(_field(document, "checker", where), f"{where}.checker"),
            ok=_boolean(_field(document, "ok", where), f"{where}.ok"),
            counts=_integer_map(counts, f"{where}.counts"),
            violations=_list(document.get("violations", []), f"{where}.violations"),
        )


#: The kinds of cycle an :class:`OpTimeline` draws (see its ``cycle_kind``).
CYCLE_KINDS = ("recovery", "read_back")


@dataclass(slots=True)
class OpTimeline:
    """A fault campaign's operations on one clock (seconds since the campaign's first operation or fault).

    ``ops``: ``[t_start, latency_s | None, status, worker]`` per operation (status 1 ok, 2 fail, 3 unknown;
    ``worker`` indexes ``workers``); a long campaign keeps every failed or unknown operation and an even sample
    of the acknowledged ones, ``total_ops`` says how many there were. ``bins``: ``[t, ok, failed, p50_s, p99_s]``
    per ``bin_s`` seconds over *every* operation (throughput, errors and latency lines are never drawn from the
    sample). ``faults``: ``[start, end, label]``. ``cycles``: ``[t, recovery_s, acknowledged, recovered]`` per
    recovery (acknowledged writes so far and how many of them the recovered log holds). ``marks``: offending
    operations ``[t_start, t_end, worker, label]`` named by a violation.
    """

    ops: list[list[Any]]
    workers: list[str]
    bins: list[list[Any]] = field(default_factory=list)
    bin_s: float = 1.0
    faults: list[list[Any]] = field(default_factory=list)
    cycles: list[list[float]] = field(default_factory=list)
    marks: list[list[Any]] = field(default_factory=list)
    total_ops: int = 0
    #: What a cycle is: ``recovery`` (a recovery after a crash, judged against the history) or ``read_back``
    #: (a damaged copy of the data read back: events the damage destroyed may be missing by design).
    cycle_kind: str = "recovery"

    def to_dict(self) -> dict[str, Any]:
        return {"ops": self.ops, "workers": self.workers, "bins": self.bins, "bin_s": self.bin_s,
                "faults": self.faults, "cycles": self.cycles, "marks": self.marks, "total_ops": self.total_ops,
                "cycle_kind": self.cycle_kind}

    @classmethod
    def from_dict(cls, document: Any, where: str = "op_timeline") -> OpTimeline:
        workers = [_string(w, f"{where}.workers")
                   for w in _list(_field(document, "workers", where), f"{where}.workers")]
        ops = _list(_field(document, "ops", where), f"{where}.ops")
        for index, op in enumerate(ops):
            at = f"{where}.ops[{index}]"
            if not isinstance(op, list) or len(op) != 4:
                raise ResultsSchemaError(f"{at}: expected [t_start, latency_s, status, worker], got {op!r}")
            _number(op[0], f"{at}[0]")
            _optional(op[1], _number, f"{at}[1]")
            if op[2] not in (OP_OK, OP_FAIL, OP_UNKNOWN):
                raise ResultsSchemaError(f"{at}[2]: status must be 1 (ok), 2 (fail) or 3 (unknown), got {op[2]!r}")
            if not isinstance(op[3], int) or not 0 <= op[3] < len(workers):
                raise ResultsSchemaError(f"{at}[3]: worker must index workers (0..{len(workers) - 1}), got {op[3]!r}")
        faults = _list(document.get("faults", []), f"{where}.faults")
        for index, fault in enumerate(faults):
            if not isinstance(fault, list) or len(fault) != 3 or _number(fault[1], f"{where}.faults[{index}]") < \
                    _number(fault[0], f"{where}.faults[{index}]"):
                raise ResultsSchemaError(
                    f"{where}.faults[{index}]: expected [start, end >= start, label], got {fault!r}")
        return cls(
            ops=ops, workers=workers,
            bins=[list(row) for row in _list(document.get("bins", []), f"{where}.bins")],
            bin_s=_number(document.get("bin_s", 1.0), f"{where}.bin_s"),
            faults=faults,
            cycles=[_numbers(row, f"{where}.cycles[{i}]")
                    for i, row in enumerate(_list(document.get("cycles", []), f"{where}.cycles"))],
            marks=_list(document.get("marks", []), f"{where}.marks"),
            total_ops=_integer(document.get("total_ops", len(ops)), f"{where}.total_ops"),
            cycle_kind=_cycle_kind(document.get("cycle_kind", "recovery"), f"{where}.cycle_kind"),
        )


def _cycle_kind(value: Any, where: str) -> str:
    if value not in CYCLE_KINDS:
        raise ResultsSchemaError(f"{where}: expected one of {', '.join(CYCLE_KINDS)}, got {value!r}")
    return str(value)


@dataclass(slots=True)
class TestRecord:
    """Everything one test recorded about one system under test."""

    __test__ = False  # not a pytest test class, despite the name

    nodeid: str
    outcome: str
    duration: float
    sut: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    metrics: dict[str, Metric] = field(default_factory=dict)
    timelines: list[Timeline] = field(default_factory=list)
    faults: list[FaultRecord] = field(default_factory=list)
    verdicts: list[VerdictRecord] = field(default_factory=list)
    skipped_reason: str | None = None
    #: Jepsen-style expectations judged by the test: fault, expected_unsafe, caught, catch evidence.
    expectations: list[dict[str, Any]] = field(default_factory=list)
    op_timeline: OpTimeline | None = None

    def __post_init__(self) -> None:
        _choice(self.outcome, OUTCOMES, f"test {self.nodeid!r}: outcome")

    def to_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "nodeid": self.nodeid,
            "outcome": self.outcome,
            "duration": self.duration,
            "sut": self.sut,
            "parameters": dict(self.parameters),
            "seed": self.seed,
            "metrics": {name: metric.to_dict() for name, metric in self.metrics.items()},
            "timelines": [timeline.to_dict() for timeline in self.timelines],
            "faults": [fault.to_dict() for fault in self.faults],
            "verdicts": [verdict.to_dict() for verdict in self.verdicts],
        }
        if self.skipped_reason is not None:
            document["skipped_reason"] = self.skipped_reason
        if self.expectations:
            document["expectations"] = [dict(entry) for entry in self.expectations]
        if self.op_timeline is not None:
            document["op_timeline"] = self.op_timeline.to_dict()
        return document

    @classmethod
    def from_dict(cls, document: Any, where: str = "test") -> TestRecord:
        nodeid = _string(_field(document, "nodeid", where), f"{where}.nodeid")
        where = f"{where}({nodeid})"
        metrics = _object(document.get("metrics", {}), f"{where}.metrics")
        return cls(
            nodeid=nodeid,
            outcome=_choice(_field(document, "outcome", where), OUTCOMES, f"{where}.outcome"),
            duration=_number(_field(document, "duration", where), f"{where}.duration"),
            sut=_optional(document.get("sut"), _string, f"{where}.sut"),
            parameters=_object(document.get("parameters", {}), f"{where}.parameters"),
            seed=_optional(document.get("seed"), _integer, f"{where}.seed"),
            metrics={name: Metric.from_dict(value, f"{where}.metrics.{name}") for name, value in metrics.items()},
            timelines=[Timeline.from_dict(item, f"{where}.timelines[{index}]")
                       for index, item in enumerate(_list(document.get("timelines", []), f"{where}.timelines"))],
            faults=[FaultRecord.from_dict(item, f"{where}.faults[{index}]")
                    for index, item in enumerate(_list(document.get("faults", []), f"{where}.faults"))],
            verdicts=[VerdictRecord.from_dict(item, f"{where}.verdicts[{index}]")
                      for index, item in enumerate(_list(document.get("verdicts", []), f"{where}.verdicts"))],
            skipped_reason=_optional(document.get("skipped_reason"), _string, f"{where}.skipped_reason"),
            expectations=[_object(item, f"{where}.expectations[{index}]") for index, item
                          in enumerate(_list(document.get("expectations", []), f"{where}.expectations"))],
            op_timeline=_optional(document.get("op_timeline"), OpTimeline.from_dict, f"{where}.op_timeline"),
        )


@dataclass(slots=True)
class ChaosMatrix:
    """Which invariant held under which fault: ``cells[fault][invariant]`` is pass, fail, skip or not_run.

    ``counts[fault][invariant]`` optionally says how much evidence a cell rests on, e.g.
    ``{"cases": 20, "proven": 20, "violations": 0}``. ``violations_by_sut[fault][sut]`` says which system under
    test the violations of a row belong to (summed over its invariants).
    """

    faults: list[str]
    invariants: list[str]
    cells: dict[str, dict[str, str]]
    counts: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    violations_by_sut: dict[str, dict[str, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for fault, row in self.cells.items():
            if fault not in self.faults:
                raise ResultsSchemaError(f"chaos_matrix.cells: fault {fault!r} is not listed in faults")
            for invariant, status in row.items():
                if invariant not in self.invariants:
                    raise ResultsSchemaError(
                        f"chaos_matrix.cells.{fault}: invariant {invariant!r} is not listed in invariants")
                _choice(status, MATRIX_STATUSES, f"chaos_matrix.cells.{fault}.{invariant}")

    def status(self, fault: str, invariant: str) -> str:
        return self.cells.get(fault, {}).get(invariant, "not_run")

    def to_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = {"faults": list(self.faults), "invariants": list(self.invariants),
                                    "cells": {fault: dict(row) for fault, row in self.cells.items()}}
        if self.counts:
            document["counts"] = {fault: {invariant: dict(numbers) for invariant, numbers in row.items()}
                                  for fault, row in self.counts.items()}
        if self.violations_by_sut:
            document["violations_by_sut"] = {fault: dict(row) for fault, row in self.violations_by_sut.items()}
        return document

    @classmethod
    def from_dict(cls, document: Any, where: str = "chaos_matrix") -> ChaosMatrix:
        cells = _object(_field(document, "cells", where), f"{where}.cells")
        counts = _object(document.get("counts", {}), f"{where}.counts")
        return cls(
            faults=[_string(v, f"{where}.faults") for v in _list(_field(document, "faults", where), f"{where}.faults")],
            invariants=[_string(v, f"{where}.invariants")
                        for v in _list(_field(document, "invariants", where), f"{where}.invariants")],
            cells={fault: {invariant: _string(status, f"{where}.cells.{fault}.{invariant}")
                           for invariant, status in _object(row, f"{where}.cells.{fault}").items()}
                   for fault, row in cells.items()},
            counts={fault: {invariant: _integer_map(numbers, f"{where}.counts.{fault}.{invariant}")
                            for invariant, numbers in _object(row, f"{where}.counts.{fault}").items()}
                    for fault, row in counts.items()},
            violations_by_sut={fault: _integer_map(row, f"{where}.violations_by_sut.{fault}") for fault, row in
                               _object(document.get("violations_by_sut", {}), f"{where}.violations_by_sut").items()},
        )


@dataclass(slots=True)
class MemoryRecord:
    """The run's memory over time: RSS samples ``(t seconds, rss bytes)``, the peak, and a leak verdict if judged."""

    peak_rss_bytes: int
    samples: list[tuple[float, int]] = field(default_factory=list)
    leak: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"peak_rss_bytes": self.peak_rss_bytes, "samples": [[t, rss] for t, rss in self.samples],
                "leak": None if self.leak is None else dict(self.leak)}

    @classmethod
    def from_dict(cls, document: Any, where: str = "memory") -> MemoryRecord:
        peak = _integer(_field(document, "peak_rss_bytes", where), f"{where}.peak_rss_bytes")
        samples: list[tuple[float, int]] = []
        for index, pair in enumerate(_list(document.get("samples", []), f"{where}.samples")):
            point = _list(pair, f"{where}.samples[{index}]")
            if len(point) != 2:
                raise ResultsSchemaError(f"{where}.samples[{index}]: expected [t, rss], got {pair!r}")
            samples.append((_number(point[0], f"{where}.samples[{index}][0]"),
                            _integer(point[1], f"{where}.samples[{index}][1]")))
        leak = document.get("leak")
        return cls(
            peak_rss_bytes=peak,
            samples=samples,
            leak=None if leak is None else _object(leak, f"{where}.leak"),
        )


@dataclass(slots=True)
class RunInfo:
    """When and how the run happened; ``fingerprint`` is the machine's :attr:`MachineFingerprint.key`."""

    started: str
    command: list[str]
    fingerprint: str
    seed: int | None = None
    finished: str | None = None
    verdict: str = "unknown"
    rerun: str | None = None

    def __post_init__(self) -> None:
        _choice(self.verdict, RUN_VERDICTS, "run.verdict")

    def to_dict(self) -> dict[str, Any]:
        return {"started": self.started, "finished": self.finished, "command": list(self.command),
                "seed": self.seed, "fingerprint": self.fingerprint, "verdict": self.verdict, "rerun": self.rerun}

    @classmethod
    def from_dict(cls, document: Any, where: str = "run") -> RunInfo:
        return cls(
            started=_timestamp(_field(document, "started", where), f"{where}.started"),
            finished=_optional(document.get("finished"), _timestamp, f"{where}.finished"),
            command=[_string(part, f"{where}.command")
                     for part in _list(_field(document, "command", where), f"{where}.command")],
            seed=_optional(document.get("seed"), _integer, f"{where}.seed"),
            fingerprint=_string(_field(document, "fingerprint", where), f"{where}.fingerprint"),
            verdict=_choice(document.get("verdict", "unknown"), RUN_VERDICTS, f"{where}.verdict"),
            rerun=_optional(document.get("rerun"), _string, f"{where}.rerun"),
        )


@dataclass(slots=True)
class RunResults:
    """A whole run: the document every suite writes and every report and comparison reads."""

    run: RunInfo
    environment: MachineFingerprint
    tests: list[TestRecord] = field(default_factory=list)
    chaos_matrix: ChaosMatrix | None = None
    memory: MemoryRecord | None = None
    skipped_mechanisms: dict[str, str] = field(default_factory=dict)

    @classmethod
    def start(cls, command: Sequence[str] | None = None, *, seed: int | None = None,
              data_path: str | os.PathLike[str] = ".") -> RunResults:
        """A new run stamped now on this machine; ``data_path`` is where the store under test keeps its files."""
        environment = machine_fingerprint(data_path)
        return cls(
            run=RunInfo(started=_now(), command=list(sys.argv if command is None else command),
                        fingerprint=environment.key, seed=seed),
            environment=environment,
        )

    def finish(self, verdict: str) -> None:
        self.run.verdict = _choice(verdict, RUN_VERDICTS, "run.verdict")
        self.run.finished = _now()

    def add(self, record: TestRecord) -> None:
        self.tests.append(record)

    def to_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "kind": RESULTS_KIND,
            "schema_version": SCHEMA_VERSION,
            "run": self.run.to_dict(),
            "environment": self.environment.to_dict(),
            "tests": [test.to_dict() for test in self.tests],
        }
        if self.chaos_matrix is not None:
            document["chaos_matrix"] = self.chaos_matrix.to_dict()
        if self.memory is not None:
            document["memory"] = self.memory.to_dict()
        if self.skipped_mechanisms:
            document["skipped_mechanisms"] = [{"mechanism": mechanism, "reason": reason}
                                              for mechanism, reason in sorted(self.skipped_mechanisms.items())]
        return document

    @classmethod
    def from_dict(cls, document: Any) -> RunResults:
        if not isinstance(document, Mapping):
            raise ResultsSchemaError(f"a results document must be a JSON object, got {type(document).__name__}")
        kind = document.get("kind", RESULTS_KIND)
        if kind != RESULTS_KIND:
            raise ResultsSchemaError(f"kind: expected {RESULTS_KIND!r}, got {kind!r} (is this a baseline file?)")
        check_schema_version(document.get("schema_version"), "results")
        try:
            environment = MachineFingerprint.from_dict(_field(document, "environment", "results"))
        except FingerprintError as error:
            raise ResultsSchemaError(f"results.environment: {error}") from error
        matrix, memory = document.get("chaos_matrix"), document.get("memory")
        return cls(
            run=RunInfo.from_dict(_field(document, "run", "results"), "results.run"),
            environment=environment,
            tests=[TestRecord.from_dict(item, f"results.tests[{index}]")
                   for index, item in enumerate(_list(_field(document, "tests", "results"), "results.tests"))],
            chaos_matrix=None if matrix is None else ChaosMatrix.from_dict(matrix, "results.chaos_matrix"),
            memory=None if memory is None else MemoryRecord.from_dict(memory, "results.memory"),
            skipped_mechanisms=_skipped_mechanisms(document.get("skipped_mechanisms", []),
                                                   "results.skipped_mechanisms"),
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write atomically (temp file, fsync, rename), so a crashed run never leaves half a document."""
        return write_json_atomically(self.to_dict(), path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RunResults:
        return cls.from_dict(read_json(path))


def _skipped_mechanisms(document: Any, where: str) -> dict[str, str]:
    mechanisms: dict[str, str] = {}
    for index, entry in enumerate(_list(document, where)):
        mechanism = _string(_field(entry, "mechanism", f"{where}[{index}]"), f"{where}[{index}].mechanism")
        mechanisms[mechanism] = _string(_field(entry, "reason", f"{where}[{index}]"), f"{where}[{index}].reason")
    return mechanisms


def load_results(path: str | os.PathLike[str]) -> RunResults:
    """Read and validate a results file; raises :class:`ResultsSchemaError` on anything malformed."""
    return RunResults.load(path)


def check_schema_version(version: Any, what: str) -> None:
    """Refuse any version but the current one, saying whether the file is older or newer than this reader."""
    if not isinstance(version, int) or isinstance(version, bool):
        raise ResultsSchemaError(f"{what}.schema_version: missing or not an integer ({version!r}); "
                                 f"this testkit reads schema_version {SCHEMA_VERSION}")
    if version < SCHEMA_VERSION:
        raise ResultsSchemaError(f"{what}.schema_version {version} is older than the {SCHEMA_VERSION} this testkit "
                                 "reads; re-run the suite to produce a current file")
    if version > SCHEMA_VERSION:
        raise ResultsSchemaError(f"{what}.schema_version {version} is newer than the {SCHEMA_VERSION} this testkit "
                                 "reads; upgrade testkit")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Parse a JSON file, turning unreadable or non-JSON input into :class:`ResultsSchemaError`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ResultsSchemaError(f"{path}: cannot read ({error})") from error
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ResultsSchemaError(f"{path}: not valid JSON ({error})") from error


def write_json_atomically(document: Any, path: str | os.PathLike[str]) -> Path:
    target = Path(path)
    try:
        text = json.dumps(document, indent=1, allow_nan=False)
    except ValueError as error:
        raise ResultsSchemaError(f"cannot encode {target.name}: {error} (NaN or infinity in a number field)") from error
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target
