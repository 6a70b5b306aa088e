"""Per-second timeline of a load run: what was offered, what completed, and how slow it was, second by second.

Offered operations are counted in the second they were *meant* to start; completions, errors and latency
percentiles in the second they *finished*, so a stall shows up as a second with many slow completions right
after it ends. Each second keeps its encoded histogram so timelines from several processes merge exactly.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from testkit.percentiles import HistogramSpec, LatencyRecorder

__all__ = ["TimelinePoint", "TimelineRecorder", "merge_timelines"]

_NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class TimelinePoint:
    """One second of a run; percentiles are ``None`` when nothing completed in that second."""

    second: int
    offered: int
    completed: int
    errors: int
    p50_ns: int | None
    p99_ns: int | None
    max_ns: int | None
    histogram: str | None = field(default=None, repr=False, compare=False)

    def to_dict(self, *, include_histogram: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "second": self.second,
            "offered": self.offered,
            "completed": self.completed,
            "errors": self.errors,
            "p50_ns": self.p50_ns,
            "p99_ns": self.p99_ns,
            "max_ns": self.max_ns,
        }
        if include_histogram:
            data["histogram"] = self.histogram
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TimelinePoint:
        return cls(
            second=int(data["second"]),
            offered=int(data["offered"]),
            completed=int(data["completed"]),
            errors=int(data["errors"]),
            p50_ns=data.get("p50_ns"),
            p99_ns=data.get("p99_ns"),
            max_ns=data.get("max_ns"),
            histogram=data.get("histogram"),
        )


class TimelineRecorder:
    """Buckets events of one run by second since ``start_ns`` (a :func:`time.monotonic_ns` reading).

    Only the histograms of the last two seconds stay live; older ones are summarised and encoded as soon as
    time moves on, so a one-hour run holds 3,600 short strings rather than 3,600 histograms.
    """

    def __init__(self, start_ns: int, spec: HistogramSpec) -> None:
        self._start_ns = start_ns
        self._spec = spec
        self._offered: defaultdict[int, int] = defaultdict(int)
        self._completed: defaultdict[int, int] = defaultdict(int)
        self._errors: defaultdict[int, int] = defaultdict(int)
        self._live: dict[int, LatencyRecorder] = {}
        self._closed: dict[int, LatencyRecorder | str] = {}
        self._newest_second = 0

    def offered(self, intended_ns: int) -> None:
        self._offered[(intended_ns - self._start_ns) // _NS_PER_S] += 1

    def completed(self, end_ns: int, latency_ns: int) -> None:
        second = (end_ns - self._start_ns) // _NS_PER_S
        self._completed[second] += 1
        recorder = self._live.get(second)
        if recorder is None:
            recorder = self._open(second)
        recorder.record(latency_ns)

    def error(self, end_ns: int) -> None:
        self._errors[(end_ns - self._start_ns) // _NS_PER_S] += 1

    def _open(self, second: int) -> LatencyRecorder:
        if second > self._newest_second:
            self._newest_second = second
            for old in [s for s in self._live if s < second - 1]:
                self._closed[old] = self._live.pop(old).encode()
        if second in self._closed:  # a straggler for a second already encoded
            previous = self._closed.pop(second)
            recorder = LatencyRecorder.decode(previous) if isinstance(previous, str) else previous
        else:
            recorder = LatencyRecorder.from_spec(self._spec)
        self._live[second] = recorder
        return recorder

    def finish(self) -> list[TimelinePoint]:
        """Every second from 0 to the last one with activity, including empty seconds in between."""
        encoded: dict[int, str] = {
            s: (h if isinstance(h, str) else h.encode()) for s, h in self._closed.items()
        }
        encoded.update({s: h.encode() for s, h in self._live.items()})
        seconds = set(self._offered) | set(self._completed) | set(self._errors)
        if not seconds:
            return []
        points = []
        for second in range(min(0, min(seconds)), max(seconds) + 1):
            histogram = encoded.get(second)
            points.append(
                _point(
                    second,
                    self._offered.get(second, 0),
                    self._completed.get(second, 0),
                    self._errors.get(second, 0),
                    LatencyRecorder.decode(histogram) if histogram else None,
                    histogram,
                )
            )
        return points


def merge_timelines(timelines: Iterable[Iterable[TimelinePoint]], spec: HistogramSpec) -> list[TimelinePoint]:
    """Add timelines of runs that shared a start instant (the workers of one multi-process run).

    Percentiles are recomputed from the merged per-second histograms; a second whose histograms were
    dropped (e.g. a timeline reloaded from a summary JSON) gets ``None`` percentiles rather than a guess.
    """
    offered: defaultdict[int, int] = defaultdict(int)
    completed: defaultdict[int, int] = defaultdict(int)
    errors: defaultdict[int, int] = defaultdict(int)
    merged: dict[int, LatencyRecorder] = {}
    incomplete: set[int] = set()
    for timeline in timelines:
        for point in timeline:
            offered[point.second] += point.offered
            completed[point.second] += point.completed
            errors[point.second] += point.errors
            if point.histogram:
                merged.setdefault(point.second, LatencyRecorder.from_spec(spec)).merge(
                    LatencyRecorder.decode(point.histogram)
                )
            elif point.completed:
                incomplete.add(point.second)
    seconds = set(offered) | set(completed) | set(errors)
    if not seconds:
        return []
    points = []
    for second in range(min(0, min(seconds)), max(seconds) + 1):
        recorder = None if second in incomplete else merged.get(second)
        points.append(
            _point(
                second,
                offered.get(second, 0),
                completed.get(second, 0),
                errors.get(second, 0),
                recorder,
                recorder.encode() if recorder is not None else None,
            )
        )
    return points


def _point(
    second: int, offered: int, completed: int, errors: int, recorder: LatencyRecorder | None, encoded: str | None
) -> TimelinePoint:
    if recorder is None or recorder.count == 0:
        return TimelinePoint(second, offered, completed, errors, None, None, None, encoded)
    values = recorder.percentiles((50.0, 99.0))
    return TimelinePoint(second, offered, completed, errors, values[50.0], values[99.0], recorder.max_ns, encoded)
