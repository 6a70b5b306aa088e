"""Memory measurement: where Python allocations grew, how resident memory moved, and whether it leaks.

A leak is judged from the *slope* of resident memory over a soak, with the warm-up (caches filling, arenas
growing) left out, using the Theil-Sen estimator: it tolerates the sawtooth of garbage collection and
allocator noise that would swing a least-squares fit, and its confidence interval lets a flat-but-noisy
process pass while a slow steady climb fails. That interval assumes independent samples; memory sampled
every second is not (a process that grows for a minute and then frees, as an index or an allocator does,
gives sixty samples of one movement), so it is widened by the residuals' lag-1 autocorrelation (an
effective sample size): a run too short to tell its own steps from a leak is called inconclusive, not leaking.
"""

from __future__ import annotations

import math
import threading
import time
import tracemalloc
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist
from types import TracebackType
from typing import Any, Literal, NamedTuple

import numpy as np
import psutil

from testkit.periodic import PeriodicSampling
from testkit.results import MemoryRecord

__all__ = [
    "GrowthSite",
    "InsufficientSamplesError",
    "LeakVerdict",
    "MemoryPoint",
    "MemoryTracker",
    "RssSampler",
    "TracemallocSession",
    "bytes_per_item",
    "leak_verdict",
]

_IGNORED_FILES = (tracemalloc.__file__, __file__, "<frozen importlib._bootstrap>",
                  "<frozen importlib._bootstrap_external>", "<unknown>")


_GROWTH_KEPT_AT_STOP = 50


class InsufficientSamplesError(ValueError):
    """Too few samples (after the warm-up) to judge anything; soak longer or sample more often."""


class GrowthSite(NamedTuple):
    """Where allocations grew: ``site`` is ``file:line`` (innermost frame first when tracing several frames)."""

    site: str
    size_diff: int
    count_diff: int


class TracemallocSession:
    """Trace Python allocations for a block and report the sites that grew since it started.

    Starts tracemalloc only if it is not already running, and stops it only if it started it, so sessions
    nest and coexist with ``python -X tracemalloc``. Tracing slows allocation-heavy code several times:
    keep it out of latency measurements.
    """

    def __init__(self, frames: int = 1) -> None:
        if frames < 1:
            raise ValueError(f"frames must be >= 1, got {frames}")
        self._frames = frames
        self._started_here = False
        self._baseline: tracemalloc.Snapshot | None = None

    def __enter__(self) -> TracemallocSession:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        if not tracemalloc.is_tracing():
            tracemalloc.start(self._frames)
            self._started_here = True
        self._baseline = self.snapshot()

    def stop(self) -> None:
        if self._started_here and tracemalloc.is_tracing():
            tracemalloc.stop()
        self._started_here = False

    @property
    def active(self) -> bool:
        return self._baseline is not None and tracemalloc.is_tracing()

    def snapshot(self) -> tracemalloc.Snapshot:
        """A snapshot without the tracer's own and the import machinery's allocations."""
        if not tracemalloc.is_tracing():
            raise RuntimeError("tracemalloc is not tracing: use the session as a context manager or call start()")
        return tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, pattern) for pattern in _IGNORED_FILES])

    def traced_bytes(self) -> tuple[int, int]:
        """``(current, peak)`` bytes of traced Python allocations."""
        return tracemalloc.get_traced_memory()

    def top_growth(self, limit: int = 10, *, since: tracemalloc.Snapshot | None = None,
                   key_type: Literal["lineno", "filename", "traceback"] = "lineno") -> list[GrowthSite]:
        """The ``limit`` sites whose allocated size grew most since ``since`` (default: the session start)."""
        reference = since if since is not None else self._baseline
        if reference is None:
            raise RuntimeError("the session has not started")
        differences = self.snapshot().compare_to(reference, key_type)
        growing = [diff for diff in differences if diff.size_diff > 0]
        growing.sort(key=lambda diff: diff.size_diff, reverse=True)
        return [GrowthSite(_describe(diff.traceback), diff.size_diff, diff.count_diff) for diff in growing[:limit]]


def _describe(traceback: tracemalloc.Traceback) -> str:
    return " <- ".join(f"{frame.filename}:{frame.lineno}" for frame in traceback)


class RssSampler:
    """Sample a process's resident set size in a background thread: ``samples`` is ``[(t seconds, rss bytes)]``.

    ``t`` counts from :meth:`start`. A sample is always taken at start and at stop, so even a block shorter
    than ``interval`` yields a before and an after.
    """

    def __init__(self, interval: float = 0.1, pid: int | None = None) -> None:
        self._process = psutil.Process(pid)
        self._sampling = PeriodicSampling(self._sample, interval, f"rss-sampler-{self._process.pid}")
        self._samples: list[tuple[float, int]] = []
        self._lock = threading.Lock()
        self._t0 = 0.0
        self.error: BaseException | None = None

    def __enter__(self) -> RssSampler:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        if not self._sampling.running:
            self._t0 = time.monotonic()
        self._sampling.start()

    def stop(self) -> None:
        self._sampling.stop()

    @property
    def running(self) -> bool:
        return self._sampling.running

    @property
    def interval(self) -> float:
        return self._sampling.interval

    @property
    def samples(self) -> list[tuple[float, int]]:
        with self._lock:
            return list(self._samples)

    @property
    def peak(self) -> int:
        """The largest RSS sampled; 0 before the first sample."""
        with self._lock:
            return max((rss for _, rss in self._samples), default=0)

    def wait_for_samples(self, count: int, timeout: float) -> bool:
        """Block until at least ``count`` samples exist or ``timeout`` passes; say whether they do."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self._samples) >= count:
                    return True
            if self._sampling.wait_stopped(min(self.interval, max(0.0, deadline - time.monotonic()))):
                break
        with self._lock:
            return len(self._samples) >= count

    def _sample(self) -> bool:
        try:
            rss = self._process.memory_info().rss
        except psutil.Error as error:  # the watched process ended: keep what we have, say why we stopped
            self.error = error
            return False
        with self._lock:
            self._samples.append((time.monotonic() - self._t0, rss))
        return True


@dataclass(frozen=True, slots=True)
class LeakVerdict:
    """The growth of memory after warm-up and whether it counts as a leak.

    ``leaking`` needs both: the growth rate exceeds the threshold, and the slope's confidence interval lies
    wholly above zero (the growth is not an artefact of noise). ``inconclusive``: the rate exceeds the
    threshold but the interval includes zero; the run cannot tell its own ups and downs from a leak.
    ``effective_samples``: how many independent samples the autocorrelated ones were worth.
    """

    slope_bytes_per_s: float
    relative_per_hour: float
    leaking: bool
    r_squared: float
    slope_low: float
    slope_high: float
    samples_used: int
    duration_s: float
    reason: str
    inconclusive: bool = False
    effective_samples: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def leak_verdict(samples: Sequence[tuple[float, float]], *, warmup_fraction: float = 0.2,
                 max_growth_per_hour: float = 0.01, max_bytes_per_s: float | None = None,
                 confidence: float = 0.95, min_samples: int = 8, max_points: int = 2000) -> LeakVerdict:
    """Judge ``[(t seconds, rss bytes)]`` from a soak.

    The first ``warmup_fraction`` of the time span is ignored. The threshold is relative growth per hour
    (``max_growth_per_hour``, 0.01 = 1 %/h of the median RSS) unless ``max_bytes_per_s`` is given, which
    replaces it. Long soaks are reduced to ``max_points`` time-bin medians first (Theil-Sen is quadratic).
    """
    if not 0 <= warmup_fraction < 1:
        raise ValueError(f"warmup_fraction must be in [0, 1), got {warmup_fraction}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if max_growth_per_hour < 0 or (max_bytes_per_s is not None and max_bytes_per_s < 0):
        raise ValueError("leak thresholds must be >= 0")
    if len(samples) < min_samples:
        raise InsufficientSamplesError(f"{len(samples)} samples; need at least {min_samples}")
    points = np.asarray(samples, dtype=float)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError("samples must be a sequence of (t, rss) pairs")
    points = points[np.argsort(points[:, 0], kind="stable")]
    start, end = points[0, 0], points[-1, 0]
    kept = points[points[:, 0] >= start + warmup_fraction * (end - start)]
    if len(kept) < min_samples:
        raise InsufficientSamplesError(
            f"{len(kept)} samples after the warm-up ({warmup_fraction:.0%} of {end - start:.1f} s); "
            f"need at least {min_samples}")
    if len(kept) > max_points:
        kept = np.array([np.median(chunk, axis=0) for chunk in np.array_split(kept, max_points)])
    t, rss = kept[:, 0], kept[:, 1]
    if np.ptp(t) <= 0:
        raise InsufficientSamplesError("all samples after the warm-up share one timestamp")
    fit = _theil_sen(t, rss, confidence)
    slope, low, high = fit.slope, fit.low, fit.high
    r_squared = 0.0 if np.ptp(rss) == 0 else float(np.corrcoef(t, rss)[0, 1] ** 2)
    typical = float(np.median(rss))
    relative_per_hour = slope * 3600.0 / typical if typical > 0 else math.inf
    if max_bytes_per_s is not None:
        exceeds = slope > max_bytes_per_s
        rule = f"{slope:,.0f} B/s vs limit {max_bytes_per_s:,.0f} B/s"
    else:
        exceeds = relative_per_hour > max_growth_per_hour
        rule = f"{relative_per_hour:.2%}/h vs limit {max_growth_per_hour:.2%}/h"
    real = low > 0
    leaking = exceeds and real
    worth = f"{len(t)} samples worth {fit.effective_samples:,.1f} independent ones"
    if leaking:
        reason = f"leaking: {rule}, slope CI [{low:,.0f}, {high:,.0f}] B/s above zero ({worth})"
    elif exceeds:
        reason = (f"inconclusive, no leak proven: {rule} but slope CI [{low:,.0f}, {high:,.0f}] B/s includes zero "
                  f"({worth}: memory moves in steps this run is too short to tell from a leak)")
    else:
        reason = f"no leak: {rule}"
    return LeakVerdict(slope, relative_per_hour, leaking, r_squared, low, high, len(kept), float(end - start),
                       reason, inconclusive=exceeds and not real, effective_samples=fit.effective_samples)


class _SenFit(NamedTuple):
    slope: float
    low: float
    high: float
    effective_samples: float


def _theil_sen(t: np.ndarray, y: np.ndarray, confidence: float) -> _SenFit:
    """The Theil-Sen slope (median of the pairwise slopes) and its rank-based confidence interval, with the
    variance of Kendall's S (ties taken out) scaled by ``n / n_eff``: the effective sample size of the fit's
    residuals under a lag-1 autoregression, ``n (1 - r1) / (1 + r1)`` (the large-sample form of Yue &
    Wang's 2004 correction, applied whenever r1 > 0: conservative, it only ever widens the interval)."""
    n = len(t)
    rise = np.concatenate([y[lag:] - y[:-lag] for lag in range(1, n)])
    run = np.concatenate([t[lag:] - t[:-lag] for lag in range(1, n)])
    apart = run > 0
    slopes = np.sort(rise[apart] / run[apart])
    slope = float(np.median(slopes))
    residuals = y - (float(np.median(y - slope * t)) + slope * t)
    centred = residuals - residuals.mean()
    spread = float(centred @ centred)
    r1 = float(centred[:-1] @ centred[1:]) / spread if spread > 0 else 0.0
    r1 = min(max(r1, 0.0), 0.999)
    inflation = (1 + r1) / (1 - r1)
    variance = (n * (n - 1) * (2 * n + 5) - _tie_term(t) - _tie_term(y)) / 18.0 * inflation
    reach = NormalDist().inv_cdf(0.5 + confidence / 2) * math.sqrt(max(variance, 0.0))
    count = len(slopes)
    low_index = max(int(round((count - reach) / 2)) - 1, 0)
    high_index = min(int(round((count + reach) / 2)), count - 1)
    return _SenFit(slope, float(slopes[low_index]), float(slopes[high_index]), n / inflation)


def _tie_term(values: np.ndarray) -> float:
    _, counts = np.unique(values, return_counts=True)
    counts = counts[counts > 1].astype(float)
    return float(np.sum(counts * (counts - 1) * (2 * counts + 5)))


def bytes_per_item(before: int, after: int, n: int) -> float:
    """Memory cost per stored item between two measurements (RSS or traced bytes) around storing ``n`` items."""
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    return (after - before) / n


class MemoryPoint(NamedTuple):
    """Memory at one moment: ``traced`` is ``None`` when Python allocations are not being traced."""

    t: float
    rss: int
    traced: int | None


class MemoryTracker:
    """One object for a memory test: background RSS sampling, optional tracemalloc, marks, leak verdict.

    Usage::

        with MemoryTracker() as memory:
            before = memory.mark()
            store_many(n)
            after = memory.mark()
        per_event = memory.bytes_per_item(before, after, n)
    """

    def __init__(self, *, rss_interval: float = 0.1, trace_python: bool = True, frames: int = 1,
                 pid: int | None = None) -> None:
        self.sampler = RssSampler(rss_interval, pid)
        self.tracemalloc = TracemallocSession(frames) if trace_python else None
        self._process = psutil.Process(pid)
        self._t0 = time.monotonic()
        self._growth_at_stop: list[GrowthSite] | None = None
        self._peak_marked = 0

    def __enter__(self) -> MemoryTracker:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        self._t0 = time.monotonic()
        if self.tracemalloc is not None:
            self.tracemalloc.start()
        self.sampler.start()

    def stop(self) -> None:
        self.sampler.stop()
        if self.tracemalloc is not None and self.tracemalloc.active:
            self._growth_at_stop = self.tracemalloc.top_growth(_GROWTH_KEPT_AT_STOP)
            self.tracemalloc.stop()

    def mark(self) -> MemoryPoint:
        """Measure now (RSS always, traced bytes if tracing)."""
        traced = tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else None
        rss = self._process.memory_info().rss
        self._peak_marked = max(self._peak_marked, rss)  # a mark between two samples is a measurement too
        return MemoryPoint(time.monotonic() - self._t0, rss, traced)

    @staticmethod
    def bytes_per_item(before: MemoryPoint, after: MemoryPoint, n: int, *,
                       measure: Literal["rss", "traced"] = "rss") -> float:
        if measure == "rss":
            return bytes_per_item(before.rss, after.rss, n)
        if before.traced is None or after.traced is None:
            raise ValueError("traced bytes were not measured: create the tracker with trace_python=True")
        return bytes_per_item(before.traced, after.traced, n)

    @property
    def running(self) -> bool:
        return self.sampler.running

    @property
    def samples(self) -> list[tuple[float, int]]:
        return self.sampler.samples

    @property
    def peak_rss(self) -> int:
        return max(self.sampler.peak, self._peak_marked)

    def top_growth(self, limit: int = 10) -> list[GrowthSite]:
        """Sites that grew most since :meth:`start`; after :meth:`stop`, as they stood at the stop."""
        if self.tracemalloc is not None and self.tracemalloc.active:
            return self.tracemalloc.top_growth(limit)
        if self._growth_at_stop is not None:
            return self._growth_at_stop[:limit]
        raise RuntimeError("Python allocations were not traced (trace_python=False or never started)")

    def leak_verdict(self, **thresholds: Any) -> LeakVerdict:
        """:func:`leak_verdict` over the RSS samples so far (keyword arguments pass through)."""
        return leak_verdict(self.samples, **thresholds)

    def to_record(self, verdict: LeakVerdict | None = None) -> MemoryRecord:
        """The results-schema form of what was sampled."""
        return MemoryRecord(peak_rss_bytes=self.peak_rss, samples=self.samples,
                            leak=None if verdict is None else verdict.to_dict())
