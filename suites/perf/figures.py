"""Figures measured for both peers: recorded as metrics with their ratio, judged against ADR-004, tabulated.

Every figure is measured for lighthouse and for SQLite in the same run. lighthouse must meet the ADR line; the
peer is measured and reported, never required to pass. A test records all its figures first and asserts once
at the end, so a miss on one line never hides the others from the results and the summary table.

When both peers' figures come from the same alternating blocks, the per-block ratios are kept as samples: the
ratio to a peer measured seconds apart on the same machine is the figure least moved by a busy neighbour, so
it is what the regression gate can judge most reliably.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from testkit.percentiles import LatencyRecorder
from testkit.speed import SpeedLines

__all__ = ["AdrLine", "FigureBook", "FigureRow", "Measured", "PeerFigures"]

Direction = Literal["lower", "higher"]
_OPS: dict[str, Callable[[float, float], bool]] = {"<=": operator.le, ">=": operator.ge, "<": operator.lt,
                                                    ">": operator.gt}


@dataclass(frozen=True, slots=True)
class AdrLine:
    """A pass line of ADR-004, e.g. ``AdrLine("<=", 10, "append p99")``, in the figure's unit."""

    op: str
    value: float
    label: str

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise ValueError(f"op must be one of {sorted(_OPS)}, got {self.op!r}")

    def met_by(self, value: float) -> bool:
        return math.isfinite(value) and _OPS[self.op](value, self.value)

    def __str__(self) -> str:
        return f"{self.op} {self.value:,.0f}" if abs(self.value) >= 1_000 else f"{self.op} {self.value:g}"


@dataclass(frozen=True, slots=True)
class Measured:
    """One peer's figure: the headline ``value`` and, where there are any, per-block ``samples`` (same unit)
    and the pooled latency ``histogram`` (nanoseconds)."""

    value: float
    samples: Sequence[float] | None = None
    histogram: LatencyRecorder | None = None


@dataclass(frozen=True, slots=True)
class FigureRow:
    test: str
    name: str
    unit: str
    direction: Direction
    lighthouse: float
    sqlite: float
    line: AdrLine | None
    judged: bool | None = None  # overrides ``line.met_by`` when the verdict needs more than the value

    @property
    def ratio(self) -> float | None:
        """lighthouse / SQLite (below 1 is better for ``lower`` figures, above 1 for ``higher`` ones)."""
        if self.sqlite == 0 or not math.isfinite(self.sqlite) or not math.isfinite(self.lighthouse):
            return None
        return self.lighthouse / self.sqlite

    @property
    def verdict(self) -> str:
        if self.line is None:
            return "info"
        return "pass" if self.met else "FAIL"

    @property
    def met(self) -> bool:
        if self.line is None:
            return True
        return self.line.met_by(self.lighthouse) if self.judged is None else self.judged


@dataclass
class FigureBook:
    """Every figure of the session, for the summary table at the end."""

    rows: list[FigureRow] = field(default_factory=list)

    def add(self, row: FigureRow) -> None:
        self.rows.append(row)

    def table(self) -> list[str]:
        header = ("figure", "unit", "lighthouse", "sqlite", "lh/sqlite", "ADR-004 line", "verdict")
        lines = [header]
        for row in self.rows:
            ratio = "-" if row.ratio is None else f"{row.ratio:.3g}x"
            line = "-" if row.line is None else f"{row.line} ({row.line.label})"
            lines.append((row.name, row.unit, _number(row.lighthouse), _number(row.sqlite), ratio, line,
                          row.verdict))
        widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
        numeric = {2, 3, 4}
        rendered = ["  ".join(cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i])
                              for i, cell in enumerate(line)).rstrip() for line in lines]
        rendered.insert(1, "  ".join("-" * width for width in widths))
        failed = sum(not row.met for row in self.rows)
        judged = sum(row.line is not None for row in self.rows)
        rendered.append(f"{judged - failed}/{judged} ADR-004 lines met by lighthouse; SQLite (WAL, synchronous=FULL) "
                        "is measured in the same run and never judged")
        return rendered


def _number(value: float) -> str:
    if math.isnan(value):
        return "-"
    if not math.isfinite(value):
        return str(value)
    if value == 0 or 0.01 <= abs(value) < 1e6:
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    return f"{value:.3e}"


class PeerFigures:
    """One test's figures: ``add`` records ``name[lighthouse]``, ``name[sqlite]`` and ``name.ratio`` as metrics,
    puts a row in the session's table, and remembers a missed ADR line for :meth:`assert_lines_met`."""

    def __init__(self, record: Any, book: FigureBook, test: str, speed: SpeedLines) -> None:
        self._record = record
        self._book = book
        self._test = test
        self._speed = speed
        self.rows: list[FigureRow] = []

    def add(self, name: str, unit: str, *, lighthouse: Measured, sqlite: Measured, line: AdrLine | None = None,
            direction: Direction = "lower", judged: bool | None = None) -> FigureRow:
        """``judged`` replaces the plain comparison with ``line`` when lighthouse's verdict needs more than its
        value (e.g. a leak needs a slope above the line *and* a confidence interval above zero)."""
        target = None if line is None else (line.op, line.value)
        self._metric(f"{name}[lighthouse]", lighthouse, unit, direction, target)
        self._metric(f"{name}[sqlite]", sqlite, unit, direction, None)
        row = FigureRow(self._test, name, unit, direction, lighthouse.value, sqlite.value, line, judged)
        if row.ratio is not None:
            ratios = None
            if lighthouse.samples and sqlite.samples and len(lighthouse.samples) == len(sqlite.samples) \
                    and all(s > 0 for s in sqlite.samples):
                ratios = [a / b for a, b in zip(lighthouse.samples, sqlite.samples, strict=True)]
            self._record.metric(f"{name}.ratio", row.ratio, "x", direction, samples=ratios)
        self.rows.append(row)
        self._book.add(row)
        return row

    def info(self, name: str, value: float, unit: str, direction: Direction = "lower") -> None:
        """A figure that belongs to one run only (no peer), kept in the results but not in the table."""
        self._record.metric(name, value, unit, direction)

    def _metric(self, name: str, measured: Measured, unit: str, direction: Direction,
                target: tuple[str, float] | None) -> None:
        if not math.isfinite(measured.value):
            return  # a figure this peer does not have (e.g. SQLite keeps no index in process memory)
        self._record.metric(name, measured.value, unit, direction, target,
                            samples=None if measured.samples is None else [float(s) for s in measured.samples],
                            histogram=measured.histogram)
        if measured.histogram is not None:
            # LatencyRecorder values are nanoseconds whatever the headline unit; say so for `testkit compare`.
            self._record.metrics[name]["histogram_unit"] = "ns"

    def misses(self) -> list[str]:
        return [f"{row.name} = {_number(row.lighthouse)} {row.unit}, ADR-004 needs {row.line} ({row.line.label})"
                for row in self.rows if row.line is not None and not row.met]

    def assert_lines_met(self) -> None:
        """Fail on a missed ADR-004 line when this run judges speed (``make perf``); record it otherwise."""
        self._speed.check(f"lighthouse misses ADR-004: {miss}" for miss in self.misses())
