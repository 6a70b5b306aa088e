"""The outcome of one load run, in a shape that merges across processes and serialises to JSON."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from testkit.load.timeline import TimelinePoint, merge_timelines
from testkit.percentiles import HistogramSpec, LatencyRecorder

__all__ = ["LoadResult"]


@dataclass(repr=False)
class LoadResult:
    """What a run offered, what the target did with it, and how long it took.

    ``latency`` is the number to judge a system by: in open-loop runs it is measured from each operation's
    *intended* start, so queueing behind a stall counts; in closed-loop runs it is measured from the actual
    start (the classic, optimistic view). ``service_time`` is always measured from the actual start, and
    ``start_lag`` (open loop only) from the intended to the actual start: it says whether the load generator
    kept up. Latency recorders hold successful operations only; failures are counted in ``errors_by_kind``.
    """

    mode: str
    latency: LatencyRecorder
    service_time: LatencyRecorder
    start_lag: LatencyRecorder
    timeline: list[TimelinePoint]
    offered: int
    completed: int
    errors_by_kind: dict[str, int]
    late_starts: int
    dropped_starts: int
    unfinished: int
    duration_s: float
    planned_duration_s: float | None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def errors(self) -> int:
        return sum(self.errors_by_kind.values())

    @property
    def achieved_rate(self) -> float:
        """Completed operations per second of wall-clock time, from the start to the last completion."""
        return self.completed / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def offered_rate(self) -> float:
        """Operations per second the plan asked for (per second of the planned duration)."""
        span = self.planned_duration_s or self.duration_s
        return self.offered / span if span > 0 else 0.0

    def to_dict(self, *, histograms: bool = True, timeline_histograms: bool = False) -> dict[str, Any]:
        """JSON-ready dict; ``histograms`` adds the encoded recorders so a reader can merge or replot them."""
        recorders = {"latency": self.latency, "service_time": self.service_time, "start_lag": self.start_lag}
        data: dict[str, Any] = {
            "mode": self.mode,
            "offered": self.offered,
            "completed": self.completed,
            "errors": self.errors,
            "errors_by_kind": dict(self.errors_by_kind),
            "late_starts": self.late_starts,
            "dropped_starts": self.dropped_starts,
            "unfinished": self.unfinished,
            "duration_s": self.duration_s,
            "planned_duration_s": self.planned_duration_s,
            "achieved_rate": self.achieved_rate,
            "offered_rate": self.offered_rate,
            "summaries": {name: recorder.summary().to_dict() for name, recorder in recorders.items()},
            "timeline": [point.to_dict(include_histogram=timeline_histograms) for point in self.timeline],
            "params": dict(self.params),
        }
        if histograms:
            data["histograms"] = {name: recorder.encode() for name, recorder in recorders.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoadResult:
        """Inverse of :meth:`to_dict` (which must have been called with ``histograms=True``)."""
        try:
            encoded = data["histograms"]
        except KeyError as exc:
            raise ValueError("LoadResult.from_dict needs a dict written with histograms=True") from exc
        return cls(
            mode=str(data["mode"]),
            latency=LatencyRecorder.decode(encoded["latency"]),
            service_time=LatencyRecorder.decode(encoded["service_time"]),
            start_lag=LatencyRecorder.decode(encoded["start_lag"]),
            timeline=[TimelinePoint.from_dict(point) for point in data["timeline"]],
            offered=int(data["offered"]),
            completed=int(data["completed"]),
            errors_by_kind={str(k): int(v) for k, v in data["errors_by_kind"].items()},
            late_starts=int(data["late_starts"]),
            dropped_starts=int(data["dropped_starts"]),
            unfinished=int(data["unfinished"]),
            duration_s=float(data["duration_s"]),
            planned_duration_s=data.get("planned_duration_s"),
            params=dict(data.get("params", {})),
        )

    @classmethod
    def merge(
        cls, parts: Sequence[LoadResult], *, mode: str | None = None, spec: HistogramSpec | None = None
    ) -> LoadResult:
        """Combine runs that shared one start instant (workers of one multi-process run)."""
        if not parts:
            raise ValueError("LoadResult.merge needs at least one result")
        spec = spec or parts[0].latency.spec
        errors: Counter[str] = Counter()
        for part in parts:
            errors.update(part.errors_by_kind)
        planned = [p.planned_duration_s for p in parts if p.planned_duration_s is not None]
        return cls(
            mode=mode or parts[0].mode,
            latency=LatencyRecorder.from_spec(spec).merge(*(p.latency for p in parts)),
            service_time=LatencyRecorder.from_spec(spec).merge(*(p.service_time for p in parts)),
            start_lag=LatencyRecorder.from_spec(spec).merge(*(p.start_lag for p in parts)),
            timeline=merge_timelines((p.timeline for p in parts), spec),
            offered=sum(p.offered for p in parts),
            completed=sum(p.completed for p in parts),
            errors_by_kind=dict(errors),
            late_starts=sum(p.late_starts for p in parts),
            dropped_starts=sum(p.dropped_starts for p in parts),
            unfinished=sum(p.unfinished for p in parts),
            duration_s=max(p.duration_s for p in parts),
            planned_duration_s=max(planned) if planned else None,
        )

    def __repr__(self) -> str:
        # Short on purpose: asyncio formats task results with repr, and a timeline can hold hours of seconds.
        return (
            f"<LoadResult {self.mode} offered={self.offered} completed={self.completed} errors={self.errors} "
            f"late={self.late_starts} dropped={self.dropped_starts} duration={self.duration_s:.3f}s>"
        )

    def __str__(self) -> str:
        return (
            f"{self.mode}: offered {self.offered} ({self.offered_rate:,.0f}/s), completed {self.completed} "
            f"({self.achieved_rate:,.0f}/s), errors {self.errors}, late {self.late_starts}, "
            f"dropped {self.dropped_starts}, unfinished {self.unfinished}; latency {self.latency.summary()}"
        )
