"""Worker-side HDR recording and master-side merging of a distributed Locust run.

A worker records every request twice: from its *intended* start (the planned arrival time, so a
stalled server's queueing counts, as in the kit's own open loop) and from when it was actually sent
(what Locust's own statistics see); and, when the server reports it (``Server-Timing``), the time the
server says it spent, which tells a slow percentile's server part from the client's and the network's.
It ships the histograms recorded since the last shipment as
encoded deltas; the master adds each worker's deltas up, and the merged histogram of all workers is
the run's pooled distribution. Nothing here imports Locust, so it is testable on its own.

For the report's timeline each worker also keeps one histogram per wall second (intended latency, at
two significant figures: a picture, not a judgement) and ships those too; the master merges each
second across workers and, once no data came for it for ``SETTLE_SECONDS``, keeps only its p50 and
p99, so an hour's run holds figures per second, not histograms.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from testkit.percentiles import LatencyRecorder

__all__ = ["SETTLE_SECONDS", "RunAggregate", "SecondLatency", "WorkerRecorder", "WorkerTotals"]

#: A second's timeline figures are taken this long after the newest second any worker reported.
SETTLE_SECONDS: Final[int] = 30
_SECOND_FIGURES: Final[int] = 2


def _second_recorder() -> LatencyRecorder:
    return LatencyRecorder(significant_figures=_SECOND_FIGURES)


class SecondLatency(NamedTuple):
    """One wall second of the merged run: requests completed in it and their intended-latency p50/p99."""

    count: int
    p50_ns: int
    p99_ns: int


@dataclass(slots=True)
class WorkerTotals:
    """Cumulative counts of one worker (or of the merged run)."""

    requests: int = 0
    events_ok: int = 0
    requests_failed: int = 0
    requests_unknown: int = 0
    late_starts: int = 0

    def add(self, other: dict[str, int]) -> None:
        for name in ("requests", "events_ok", "requests_failed", "requests_unknown", "late_starts"):
            setattr(self, name, getattr(self, name) + int(other.get(name, 0)))

    def to_dict(self) -> dict[str, int]:
        return {"requests": self.requests, "events_ok": self.events_ok, "requests_failed": self.requests_failed,
                "requests_unknown": self.requests_unknown, "late_starts": self.late_starts}


class WorkerRecorder:
    """What one worker process measured; ``take_delta()`` hands over everything since the last call."""

    #: a start more than this late against its plan counts as a late start
    LATE_NS = 10_000_000

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.intended = LatencyRecorder()
        self.service = LatencyRecorder()
        self.server = LatencyRecorder()
        self.totals = WorkerTotals()
        self._clock = clock
        self._delta_intended = LatencyRecorder()
        self._delta_service = LatencyRecorder()
        self._delta_server = LatencyRecorder()
        self._delta = WorkerTotals()
        self._seconds: dict[int, list[int]] = {}  # wall second -> [requests, events ok, errors]
        self._second_latency: dict[int, LatencyRecorder] = {}  # wall second -> intended latency

    def record(self, intended_ns: int, sent_ns: int, done_ns: int, *, events_ok: int, failed: bool,
               unknown: bool, server_ns: int | None = None) -> None:
        """One request: ``intended_ns``/``sent_ns``/``done_ns`` on ``time.perf_counter_ns``; ``server_ns``:
        what the server said it spent (``None``: it did not say)."""
        intended = max(1, done_ns - intended_ns)
        for recorder in (self.intended, self._delta_intended):
            recorder.record(intended)
        for recorder in (self.service, self._delta_service):
            recorder.record(max(1, done_ns - sent_ns))
        if server_ns is not None:
            for recorder in (self.server, self._delta_server):
                recorder.record(server_ns)
        late = int(sent_ns - intended_ns > self.LATE_NS)
        for totals in (self.totals, self._delta):
            totals.requests += 1
            totals.events_ok += events_ok
            totals.requests_failed += int(failed)
            totals.requests_unknown += int(unknown)
            totals.late_starts += late
        wall_second = int(self._clock())
        second = self._seconds.setdefault(wall_second, [0, 0, 0])
        second[0] += 1
        second[1] += events_ok
        second[2] += int(failed or unknown)
        latency = self._second_latency.get(wall_second)
        if latency is None:
            latency = self._second_latency[wall_second] = _second_recorder()
        latency.record(intended)

    def take_delta(self, *, final: bool = False) -> dict[str, Any]:
        """The message a worker sends its master: encoded histograms and counts since the previous one;
        ``final`` marks the last one of a run (sent once the worker's users have stopped)."""
        message = {"intended": self._delta_intended.encode(), "service": self._delta_service.encode(),
                   "server": self._delta_server.encode(), "totals": self._delta.to_dict(),
                   "seconds": {str(k): v for k, v in self._seconds.items()},
                   "second_latency": {str(k): v.encode() for k, v in self._second_latency.items()},
                   "final": final}
        self._delta_intended.reset()
        self._delta_service.reset()
        self._delta_server.reset()
        self._delta = WorkerTotals()
        self._seconds = {}
        self._second_latency = {}
        return message

    def summary(self) -> dict[str, Any]:
        """The worker's own cumulative account, written next to its journal (to check the master's merge)."""
        return {"totals": self.totals.to_dict(), "intended_count": self.intended.count,
                "service_count": self.service.count, "server_count": self.server.count,
                "intended": self.intended.encode()}


@dataclass(slots=True)
class _Worker:
    intended: LatencyRecorder = field(default_factory=LatencyRecorder)
    service: LatencyRecorder = field(default_factory=LatencyRecorder)
    server: LatencyRecorder = field(default_factory=LatencyRecorder)
    totals: WorkerTotals = field(default_factory=WorkerTotals)


class RunAggregate:
    """The master's merge of every worker's deltas."""

    def __init__(self) -> None:
        self.workers: dict[str, _Worker] = {}
        self.finished: set[str] = set()  # workers whose final delta arrived
        self.seconds: dict[int, list[int]] = {}
        self.started_wall = time.time()
        self.second_latency: dict[int, SecondLatency] = {}  # settled seconds
        #: requests whose second had settled before their delta arrived: in the pooled figures, not the timeline
        self.unplotted_requests = 0
        self._open_seconds: dict[int, LatencyRecorder] = {}

    def add(self, worker_id: str, message: dict[str, Any]) -> None:
        worker = self.workers.setdefault(worker_id, _Worker())
        worker.intended.merge(LatencyRecorder.decode(message["intended"]))
        worker.service.merge(LatencyRecorder.decode(message["service"]))
        if message.get("server"):  # absent from older workers
            worker.server.merge(LatencyRecorder.decode(message["server"]))
        worker.totals.add(message["totals"])
        if message.get("final"):
            self.finished.add(worker_id)
        for second, values in message["seconds"].items():
            bucket = self.seconds.setdefault(int(second), [0, 0, 0])
            for index, value in enumerate(values):
                bucket[index] += int(value)
        for second_text, encoded in message.get("second_latency", {}).items():  # absent from older workers
            second, latency = int(second_text), LatencyRecorder.decode(encoded)
            if second in self.second_latency:
                self.unplotted_requests += latency.count
                continue
            if second not in self._open_seconds:
                self._open_seconds[second] = _second_recorder()
            self._open_seconds[second].merge(latency)
        if self._open_seconds:
            self.settle(before=max(self._open_seconds) - SETTLE_SECONDS)

    def settle(self, before: int | None = None) -> None:
        """Keep only the figures of the seconds before ``before`` (every second when ``None``: the run is over)."""
        for second in sorted(self._open_seconds):
            if before is not None and second >= before:
                break
            latency = self._open_seconds.pop(second)
            self.second_latency[second] = SecondLatency(latency.count, latency.percentile(50), latency.percentile(99))

    @property
    def complete(self) -> bool:
        """Every worker that reported has also sent its final delta."""
        return bool(self.workers) and self.finished >= set(self.workers)

    def merged(self) -> tuple[LatencyRecorder, LatencyRecorder, WorkerTotals]:
        intended, service, totals = LatencyRecorder(), LatencyRecorder(), WorkerTotals()
        for worker in self.workers.values():
            intended.merge(worker.intended)
            service.merge(worker.service)
            totals.add(worker.totals.to_dict())
        return intended, service, totals

    def merged_server(self) -> LatencyRecorder:
        """Every worker's record of the time the server reported (empty when it reported none)."""
        server = LatencyRecorder()
        for worker in self.workers.values():
            server.merge(worker.server)
        return server
