"""Rate profiles: when each operation of a load run is *meant* to start.

Every profile is a rate curve lambda(t) over ``duration_s`` seconds plus an arrival process, and iterating it
yields intended start offsets in nanoseconds from the start of the run. Curves are piecewise linear (a
step is two knots at the same instant), so each profile inverts its cumulative rate in closed form:

* ``"paced"`` arrivals put the k-th operation where the cumulative rate reaches k (a metronome that follows
  the curve);
* ``"poisson"`` arrivals put them where it reaches a sum of unit exponentials, which is exactly a
  (non-homogeneous) Poisson process by the time-rescaling theorem.

Profiles are frozen dataclasses: the same fields and seed give the same offsets on every machine, they pickle
to worker processes, and :meth:`RateProfile.shard` deals one schedule round-robin over workers so the union of
the shards is exactly the single-process schedule.
"""

from __future__ import annotations

import math
from itertools import islice
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from testkit.load.errors import InvalidProfile

__all__ = [
    "Arrivals",
    "Bursts",
    "BusinessHours",
    "ConstantRate",
    "PiecewiseRate",
    "PoissonArrivals",
    "Ramp",
    "RateProfile",
    "ShardedProfile",
    "Steps",
]

Arrivals = Literal["paced", "poisson"]
Knots = tuple[tuple[float, float], ...]

_NS_PER_S = 1_000_000_000
_CHUNK = 4_096  # arrivals per numpy batch: constant memory, and each batch costs the dispatcher < 0.5 ms


class RateProfile(ABC):
    """A planned arrival schedule; iterate it for intended start offsets (ns, non-decreasing, <= duration)."""

    @property
    @abstractmethod
    def duration_s(self) -> float:
        """Length of the schedule in seconds; no offset lies beyond it."""

    @abstractmethod
    def offsets_ns(self) -> Iterator[int]:
        """Intended start offsets in nanoseconds from the start of the run."""

    @abstractmethod
    def expected_count(self) -> float:
        """Mean number of operations the schedule offers (exact for paced arrivals, up to rounding)."""

    def __iter__(self) -> Iterator[int]:
        return self.offsets_ns()

    def mean_rate(self) -> float:
        return self.expected_count() / self.duration_s

    def shard(self, index: int, count: int) -> ShardedProfile:
        """Every ``count``-th arrival starting at ``index``: one worker's share of this schedule."""
        return ShardedProfile(self, index, count)


class _CurveProfile(RateProfile):
    """A profile defined by a piecewise-linear rate curve; subclasses only describe their knots."""

    arrivals: Arrivals
    seed: int

    @abstractmethod
    def knots(self) -> Knots:
        """(time_s, rate_per_s) points from 0 to ``duration_s``; the rate is linear between them."""

    @property
    def duration_s(self) -> float:
        return self.knots()[-1][0]

    def rate_at(self, t_s: float) -> float:
        """Planned rate at ``t_s`` seconds (the right-hand value at a step)."""
        times, rates = _arrays(self.knots())
        if not 0.0 <= t_s <= times[-1]:
            return 0.0
        index = int(np.searchsorted(times, t_s, side="right")) - 1
        index = min(index, len(times) - 2)
        span = times[index + 1] - times[index]
        if span <= 0:
            return float(rates[index + 1])
        fraction = (t_s - times[index]) / span
        return float(rates[index] + fraction * (rates[index + 1] - rates[index]))

    def expected_count(self) -> float:
        times, rates = _arrays(self.knots())
        return float(np.sum((rates[1:] + rates[:-1]) / 2.0 * np.diff(times)))

    def stretched(self, duration_s: float) -> PiecewiseRate:
        """The same curve compressed or stretched in time to ``duration_s`` (rates unchanged)."""
        _check_positive("duration_s", duration_s)
        factor = duration_s / self.duration_s
        return PiecewiseRate(
            tuple((t * factor, r) for t, r in self.knots()), arrivals=self.arrivals, seed=self.seed
        )

    def offsets_ns(self) -> Iterator[int]:
        knots = self.knots()
        _validate_knots(knots)
        _validate_arrivals(self.arrivals, self.seed)
        return _invert_cumulative_rate(knots, self.arrivals, self.seed)


@dataclass(frozen=True)
class PiecewiseRate(_CurveProfile):
    """Any rate curve given as knots ``((t0=0, r0), (t1, r1), ...)``; the building block of the others."""

    points: Knots
    arrivals: Arrivals = "poisson"
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "points", tuple((float(t), float(r)) for t, r in self.points))
        _validate_knots(self.points)
        _validate_arrivals(self.arrivals, self.seed)

    def knots(self) -> Knots:
        return self.points


@dataclass(frozen=True)
class ConstantRate(_CurveProfile):
    """``rate`` operations per second, evenly spaced (wrk2's ``-R``)."""

    rate: float
    duration: float
    arrivals: Arrivals = "paced"
    seed: int = 0

    def __post_init__(self) -> None:
        _check_rate("rate", self.rate)
        _check_positive("duration", self.duration)
        _validate_arrivals(self.arrivals, self.seed)

    def knots(self) -> Knots:
        return ((0.0, float(self.rate)), (float(self.duration), float(self.rate)))


@dataclass(frozen=True)
class PoissonArrivals(_CurveProfile):
    """Independent arrivals at mean ``rate`` per second: how many uncoordinated clients really behave."""

    rate: float
    duration: float
    seed: int = 0
    arrivals: Arrivals = "poisson"

    def __post_init__(self) -> None:
        _check_rate("rate", self.rate)
        _check_positive("duration", self.duration)
        _validate_arrivals(self.arrivals, self.seed)

    def knots(self) -> Knots:
        return ((0.0, float(self.rate)), (float(self.duration), float(self.rate)))


@dataclass(frozen=True)
class Ramp(_CurveProfile):
    """Rate moving linearly from ``start_rate`` to ``end_rate``: finds the knee of a latency curve."""

    start_rate: float
    end_rate: float
    duration: float
    arrivals: Arrivals = "poisson"
    seed: int = 0

    def __post_init__(self) -> None:
        _check_rate("start_rate", self.start_rate)
        _check_rate("end_rate", self.end_rate)
        _check_positive("duration", self.duration)
        _validate_arrivals(self.arrivals, self.seed)

    def knots(self) -> Knots:
        return ((0.0, float(self.start_rate)), (float(self.duration), float(self.end_rate)))


@dataclass(frozen=True)
class Steps(_CurveProfile):
    """A staircase: each of ``rates`` held for ``step_duration`` seconds (capacity search, k6 stages)."""

    rates: Sequence[float]
    step_duration: float
    arrivals: Arrivals = "poisson"
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "rates", tuple(float(r) for r in self.rates))
        if not self.rates:
            raise InvalidProfile("Steps needs at least one rate")
        for rate in self.rates:
            _check_rate("rates[]", rate)
        _check_positive("step_duration", self.step_duration)
        _validate_arrivals(self.arrivals, self.seed)

    def knots(self) -> Knots:
        points: list[tuple[float, float]] = []
        for index, rate in enumerate(self.rates):
            begin = index * float(self.step_duration)
            points += [(begin, rate), (begin + float(self.step_duration), rate)]
        return tuple(points)


@dataclass(frozen=True)
class Bursts(_CurveProfile):
    """``base_rate`` with a square burst at ``burst_rate`` for ``burst_duration`` every ``period`` seconds.

    The first burst starts at ``first_burst_at`` (default: one period in), so a run sees steady state first.
    """

    base_rate: float
    burst_rate: float
    period: float
    burst_duration: float
    duration: float
    first_burst_at: float | None = None
    arrivals: Arrivals = "poisson"
    seed: int = 0

    def __post_init__(self) -> None:
        _check_rate("base_rate", self.base_rate)
        _check_rate("burst_rate", self.burst_rate)
        _check_positive("period", self.period)
        _check_positive("burst_duration", self.burst_duration)
        _check_positive("duration", self.duration)
        if self.burst_duration > self.period:
            raise InvalidProfile(f"burst_duration {self.burst_duration} exceeds period {self.period}")
        if self.first_burst_at is not None and not 0 <= self.first_burst_at < self.duration:
            raise InvalidProfile(f"first_burst_at must be within [0, duration), got {self.first_burst_at}")
        _validate_arrivals(self.arrivals, self.seed)

    def burst_windows(self) -> list[tuple[float, float]]:
        """(start_s, end_s) of each burst within the run."""
        start = float(self.period if self.first_burst_at is None else self.first_burst_at)
        windows = []
        while start < self.duration:
            windows.append((start, min(start + float(self.burst_duration), float(self.duration))))
            start += float(self.period)
        return windows

    def knots(self) -> Knots:
        base, burst, end = float(self.base_rate), float(self.burst_rate), float(self.duration)
        points: list[tuple[float, float]] = [(0.0, base)]
        for begin, finish in self.burst_windows():
            points += [(begin, base), (begin, burst), (finish, burst), (finish, base)]
        points.append((end, base))
        return tuple(points)


# Share of the peak rate of a working day (local hours), shaped like office traffic: quiet night, morning
# ramp, a late-morning peak, a lunch dip, a second peak, and a long evening tail.
_WORKDAY_SHAPE: tuple[tuple[float, float], ...] = (
    (0.0, 0.04), (6.0, 0.04), (7.5, 0.20), (9.0, 0.80), (10.5, 1.00), (12.0, 0.85), (12.75, 0.55),
    (13.75, 0.85), (15.0, 0.95), (17.0, 0.70), (18.5, 0.30), (21.0, 0.12), (24.0, 0.04),
)


@dataclass(frozen=True)
class BusinessHours(_CurveProfile):
    """A working day of traffic (``start_hour``..``end_hour``) compressed into ``duration`` seconds.

    ``peak_rate`` is the late-morning maximum; the night floor is 4 % of it. Use it for soaks that should see
    the daily swing in minutes instead of a day.
    """

    peak_rate: float
    duration: float
    start_hour: float = 0.0
    end_hour: float = 24.0
    arrivals: Arrivals = "poisson"
    seed: int = 0

    def __post_init__(self) -> None:
        _check_rate("peak_rate", self.peak_rate)
        _check_positive("duration", self.duration)
        if not 0.0 <= self.start_hour < self.end_hour <= 24.0:
            raise InvalidProfile(f"need 0 <= start_hour < end_hour <= 24, got {self.start_hour}..{self.end_hour}")
        _validate_arrivals(self.arrivals, self.seed)

    def share_at_hour(self, hour: float) -> float:
        hours = [h for h, _ in _WORKDAY_SHAPE]
        shares = [s for _, s in _WORKDAY_SHAPE]
        return float(np.interp(hour, hours, shares))

    def knots(self) -> Knots:
        start, end = float(self.start_hour), float(self.end_hour)
        inner = [h for h, _ in _WORKDAY_SHAPE if start < h < end]
        hours = [start, *inner, end]
        scale = float(self.duration) / (end - start)
        return tuple(((h - start) * scale, float(self.peak_rate) * self.share_at_hour(h)) for h in hours)


@dataclass(frozen=True)
class ShardedProfile(RateProfile):
    """One worker's share of ``base``: arrivals ``index``, ``index + count``, ... of its schedule."""

    base: RateProfile
    index: int
    count: int

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise InvalidProfile(f"shard count must be a positive int, got {self.count!r}")
        if isinstance(self.index, bool) or not isinstance(self.index, int) or not 0 <= self.index < self.count:
            raise InvalidProfile(f"shard index must be within 0..{self.count - 1}, got {self.index!r}")

    @property
    def duration_s(self) -> float:
        return self.base.duration_s

    def expected_count(self) -> float:
        return self.base.expected_count() / self.count

    def offsets_ns(self) -> Iterator[int]:
        return islice(self.base.offsets_ns(), self.index, None, self.count)


# -- validation and inversion -----------------------------------------------------------------------------
def _check_rate(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise InvalidProfile(f"{name} must be a finite rate >= 0 per second, got {value!r}")


def _check_positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise InvalidProfile(f"{name} must be a finite number of seconds > 0, got {value!r}")


def _validate_arrivals(arrivals: str, seed: int) -> None:
    if arrivals not in ("paced", "poisson"):
        raise InvalidProfile(f"arrivals must be 'paced' or 'poisson', got {arrivals!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InvalidProfile(f"seed must be an int >= 0, got {seed!r}")


def _validate_knots(knots: Knots) -> None:
    if len(knots) < 2:
        raise InvalidProfile("a rate curve needs at least two knots")
    if knots[0][0] != 0.0:
        raise InvalidProfile(f"the first knot must be at t=0, got t={knots[0][0]}")
    previous = 0.0
    for t, rate in knots:
        if not math.isfinite(t) or t < previous:
            raise InvalidProfile(f"knot times must be finite and non-decreasing, got {t} after {previous}")
        _check_rate("knot rate", rate)
        previous = t
    if knots[-1][0] <= 0.0:
        raise InvalidProfile("a rate curve must last longer than 0 s")


def _arrays(knots: Knots) -> tuple[np.ndarray, np.ndarray]:
    times = np.array([t for t, _ in knots], dtype=np.float64)
    rates = np.array([r for _, r in knots], dtype=np.float64)
    return times, rates


def _invert_cumulative_rate(knots: Knots, arrivals: Arrivals, seed: int) -> Iterator[int]:
    """Map arrival 'levels' of the cumulative rate Lambda(t) back to times, a chunk at a time."""
    times, rates = _arrays(knots)
    spans = np.diff(times)
    areas = (rates[1:] + rates[:-1]) / 2.0 * spans
    cumulative = np.concatenate(([0.0], np.cumsum(areas)))
    total = float(cumulative[-1])
    slopes = np.divide(np.diff(rates), spans, out=np.zeros_like(spans), where=spans > 0)
    last_segment = len(spans) - 1
    rng = np.random.default_rng(seed)
    level = 0.0
    produced = 0
    while True:
        if arrivals == "paced":
            levels = produced + np.arange(_CHUNK, dtype=np.float64)
        else:
            levels = level + np.cumsum(rng.exponential(1.0, _CHUNK))
            level = float(levels[-1])
        inside = levels[levels < total]
        if inside.size:
            segment = np.clip(np.searchsorted(cumulative, inside, side="right") - 1, 0, last_segment)
            remaining = inside - cumulative[segment]
            start_rate = rates[segment]
            slope = slopes[segment]
            # tau solves start_rate * tau + slope * tau^2 / 2 = remaining, in a form stable when slope -> 0.
            root = np.sqrt(np.maximum(start_rate * start_rate + 2.0 * slope * remaining, 0.0))
            denominator = start_rate + root
            tau = np.divide(2.0 * remaining, denominator, out=np.zeros_like(remaining), where=denominator > 0)
            moments = np.minimum(times[segment] + np.minimum(tau, spans[segment]), times[-1])
            offsets = np.maximum.accumulate((moments * _NS_PER_S).astype(np.int64))
            yield from offsets.tolist()
            produced += inside.size
        if inside.size < levels.size:
            return
