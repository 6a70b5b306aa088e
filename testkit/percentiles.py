"""Latency recording on HdrHistogram: exact-enough percentiles that merge across workers and processes.

Why HdrHistogram and not a list of samples: memory stays constant however long a soak runs, recording costs
about a microsecond, the relative error is bounded (0.1 % at 3 significant figures), and encoded histograms
("histoblobs") add up exactly, so percentiles of a multi-process run are the percentiles of all its samples,
never an average of per-process percentiles.
"""

from __future__ import annotations

import binascii
import math
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from time import monotonic_ns
from typing import Any, NamedTuple

import numpy as np
from hdrh.codec import HdrCookieException, HdrLengthException
from hdrh.histogram import HdrHistogram

__all__ = [
    "HOUR_NS",
    "DEFAULT_PERCENTILES",
    "DistributionPoint",
    "HistogramSpec",
    "IncompatibleRecorders",
    "InvalidHistogramEncoding",
    "InvalidHistogramSpec",
    "LatencyOutOfRange",
    "LatencyRecorder",
    "LatencySummary",
    "PercentileError",
    "format_ms",
]

HOUR_NS = 3_600 * 1_000_000_000
DEFAULT_PERCENTILES: tuple[float, ...] = (50.0, 90.0, 95.0, 99.0, 99.9, 99.99)


class PercentileError(ValueError):
    """Base class of every error this module raises."""


class InvalidHistogramSpec(PercentileError):
    """The trackable range or the precision is not one HdrHistogram can represent."""


class LatencyOutOfRange(PercentileError):
    """A value below zero or above the recorder's highest trackable value."""


class IncompatibleRecorders(PercentileError):
    """A merge would lose values: the other recorder holds values beyond this one's range."""


class InvalidHistogramEncoding(PercentileError):
    """The text is not a histoblob produced by :meth:`LatencyRecorder.encode`."""


@dataclass(frozen=True)
class HistogramSpec:
    """Range and precision of a recorder, kept apart so it can be pickled to workers and compared."""

    lowest_ns: int = 1
    highest_ns: int = HOUR_NS
    significant_figures: int = 3

    def __post_init__(self) -> None:
        for name in ("lowest_ns", "highest_ns", "significant_figures"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidHistogramSpec(f"{name} must be an int, got {value!r}")
        if self.lowest_ns < 1:
            raise InvalidHistogramSpec(f"lowest_ns must be >= 1, got {self.lowest_ns}")
        if self.highest_ns < 2 * self.lowest_ns:
            raise InvalidHistogramSpec(
                f"highest_ns must be >= 2 * lowest_ns, got {self.highest_ns} < 2 * {self.lowest_ns}"
            )
        if not 1 <= self.significant_figures <= 5:
            raise InvalidHistogramSpec(f"significant_figures must be 1..5, got {self.significant_figures}")

    def new_recorder(self) -> LatencyRecorder:
        return LatencyRecorder(self.lowest_ns, self.highest_ns, self.significant_figures)


def format_ms(ns: float) -> str:
    """A latency in milliseconds as the terminal summary and the report both print it: three decimals."""
    return f"{ns / 1e6:.3f}"


@dataclass(frozen=True)
class LatencySummary:
    """The figures people quote about a latency distribution, all in nanoseconds (0 when empty)."""

    count: int
    min_ns: int
    max_ns: int
    mean_ns: float
    stddev_ns: float
    p50_ns: int
    p90_ns: int
    p95_ns: int
    p99_ns: int
    p999_ns: int
    p9999_ns: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        if not self.count:
            return "n=0"
        return (
            f"n={self.count} p50={_human(self.p50_ns)} p90={_human(self.p90_ns)} p99={_human(self.p99_ns)} "
            f"p99.9={_human(self.p999_ns)} max={_human(self.max_ns)} mean={_human(self.mean_ns)}"
        )


class DistributionPoint(NamedTuple):
    """One step of the percentile distribution: ``percentile`` % of values are <= ``value_ns``."""

    percentile: float
    value_ns: int


class LatencyRecorder:
    """Records latencies in nanoseconds and answers percentile questions about them.

    Values are kept at ``significant_figures`` precision between ``lowest_ns`` and ``highest_ns`` (1 ns .. 1 h
    by default). Recorders merge (``a.merge(b)`` or ``a += b``) and travel between processes as text
    (:meth:`encode` / :meth:`decode`).
    """

    __slots__ = ("_histogram", "_record_value", "_spec")

    def __init__(self, lowest_ns: int = 1, highest_ns: int = HOUR_NS, significant_figures: int = 3) -> None:
        self._spec = HistogramSpec(lowest_ns, highest_ns, significant_figures)
        self._histogram = HdrHistogram(lowest_ns, highest_ns, significant_figures)
        self._record_value = self._histogram.record_value

    # -- construction -------------------------------------------------------------------------------------
    @classmethod
    def from_spec(cls, spec: HistogramSpec) -> LatencyRecorder:
        return cls(spec.lowest_ns, spec.highest_ns, spec.significant_figures)

    @classmethod
    def decode(cls, encoded: str | bytes) -> LatencyRecorder:
        """Rebuild a recorder from :meth:`encode`'s output (range and precision travel with it)."""
        if isinstance(encoded, str):
            try:
                encoded = encoded.encode("ascii")
            except UnicodeEncodeError as exc:
                raise InvalidHistogramEncoding("histoblob must be ASCII base64 text") from exc
        if not isinstance(encoded, bytes) or not encoded:
            raise InvalidHistogramEncoding(f"expected a non-empty histoblob, got {encoded!r:.40}")
        try:
            histogram = HdrHistogram.decode(encoded)
        except (binascii.Error, HdrCookieException, HdrLengthException, zlib.error, TypeError, ValueError) as exc:
            raise InvalidHistogramEncoding(f"not a valid histoblob ({type(exc).__name__}: {exc})") from exc
        recorder = cls.__new__(cls)
        recorder._spec = HistogramSpec(
            int(histogram.lowest_trackable_value),
            int(histogram.highest_trackable_value),
            int(histogram.significant_figures),
        )
        recorder._histogram = histogram
        recorder._record_value = histogram.record_value
        return recorder

    def new_empty(self) -> LatencyRecorder:
        """An empty recorder with this one's range and precision."""
        return LatencyRecorder.from_spec(self._spec)

    def copy(self) -> LatencyRecorder:
        duplicate = self.new_empty()
        duplicate.merge(self)
        return duplicate

    # -- recording ----------------------------------------------------------------------------------------
    @property
    def spec(self) -> HistogramSpec:
        return self._spec

    def record(self, value_ns: int, count: int = 1) -> None:
        """Record ``count`` occurrences of ``value_ns``; raises :class:`LatencyOutOfRange` outside the range."""
        try:
            recorded = self._record_value(value_ns, count)
        except TypeError as exc:
            raise TypeError(f"latency must be a number of nanoseconds, got {value_ns!r}") from exc
        if not recorded:
            raise LatencyOutOfRange(
                f"{value_ns} ns is outside the trackable range 0..{self._spec.highest_ns} ns"
            )

    def record_since(self, start_ns: int) -> int:
        """Record the time elapsed since ``start_ns`` (a :func:`time.monotonic_ns` reading); return it."""
        elapsed = monotonic_ns() - start_ns
        self.record(elapsed)
        return elapsed

    @contextmanager
    def time(self) -> Iterator[None]:
        """Time the ``with`` body; failures are timed too, since a slow failure is still a slow operation."""
        start = monotonic_ns()
        try:
            yield
        finally:
            self.record_since(start)

    def record_corrected(self, value_ns: int, expected_interval_ns: int) -> None:
        """Record a value measured by a paced client, adding the samples a stall made it miss.

        A closed-loop client that waits for a slow reply skips the requests it would have sent meanwhile
        (coordinated omission); HdrHistogram back-fills them at ``value - k * interval``.
        """
        _check_interval(expected_interval_ns)
        if not self._histogram.record_corrected_value(value_ns, expected_interval_ns):
            raise LatencyOutOfRange(
                f"{value_ns} ns is outside the trackable range 0..{self._spec.highest_ns} ns"
            )

    def corrected(self, expected_interval_ns: int) -> LatencyRecorder:
        """A copy corrected for coordinated omission, as HdrHistogram's ``copyCorrectedForCoordinatedOmission``.

        Use it on closed-loop results when the intended pace is known; open-loop results need no correction
        because they are already measured from each operation's intended start.
        """
        _check_interval(expected_interval_ns)
        result = self.new_empty()
        target = result._histogram
        for step in self._histogram.get_recorded_iterator():
            target.record_corrected_value(step.value_iterated_to, expected_interval_ns, step.count_at_value_iterated_to)
        return result

    def reset(self) -> None:
        self._histogram = HdrHistogram(self._spec.lowest_ns, self._spec.highest_ns, self._spec.significant_figures)
        self._record_value = self._histogram.record_value

    # -- merging and transport ----------------------------------------------------------------------------
    def merge(self, *others: LatencyRecorder) -> LatencyRecorder:
        """Add every value of ``others`` to this recorder; returns ``self``."""
        for other in others:
            if not isinstance(other, LatencyRecorder):
                raise TypeError(f"can only merge a LatencyRecorder, got {type(other).__name__}")
            if other.count == 0:
                # hdrh's add() would set min to 0 when the other histogram is empty.
                continue
            try:
                self._histogram.add(other._histogram)
            except IndexError as exc:
                raise IncompatibleRecorders(str(exc)) from exc
        return self

    def __iadd__(self, other: LatencyRecorder) -> LatencyRecorder:
        return self.merge(other)

    def __add__(self, other: LatencyRecorder) -> LatencyRecorder:
        return self.copy().merge(other)

    def encode(self) -> str:
        """Compressed base64 histoblob (HdrHistogram V2 format, readable by every HdrHistogram port)."""
        return bytes(self._histogram.encode()).decode("ascii")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LatencyRecorder):
            return NotImplemented
        return self._spec == other._spec and bool(self._histogram.equals(other._histogram))

    __hash__ = None  # type: ignore[assignment]  # mutable: never a dict key

    def __getstate__(self) -> str:
        return self.encode()

    def __setstate__(self, state: str) -> None:
        decoded = LatencyRecorder.decode(state)
        self._spec, self._histogram, self._record_value = decoded._spec, decoded._histogram, decoded._record_value

    # -- reading ------------------------------------------------------------------------------------------
    @property
    def count(self) -> int:
        return int(self._histogram.get_total_count())

    def __len__(self) -> int:
        return self.count

    @property
    def min_ns(self) -> int:
        return int(self._histogram.get_min_value()) if self.count else 0

    @property
    def max_ns(self) -> int:
        return int(self._histogram.get_max_value()) if self.count else 0

    @property
    def mean_ns(self) -> float:
        return self._moments()[0]

    @property
    def stddev_ns(self) -> float:
        return self._moments()[1]

    def _moments(self) -> tuple[float, float]:
        """Mean and standard deviation over bucket midpoints, as hdrh computes them.

        hdrh's own ``get_mean_value``/``get_stddev`` walk every bucket through a Python iterator (about
        0.3 s for the default range); this walks only the buckets that hold values.
        """
        histogram = self._histogram
        total = histogram.get_total_count()
        if not total:
            return 0.0, 0.0
        counts = np.ctypeslib.as_array(histogram.counts)[: histogram.counts_len]
        midpoints: list[int] = []
        weights: list[int] = []
        for index in np.flatnonzero(counts).tolist():
            lowest = histogram.get_lowest_equivalent_value(histogram.get_value_from_index(index))
            highest = histogram.get_highest_equivalent_value(lowest)
            midpoints.append(lowest + ((highest - lowest + 1) >> 1))
            weights.append(int(counts[index]))
        values = np.array(midpoints, dtype=np.float64)
        counts_at = np.array(weights, dtype=np.float64)
        mean = float(np.dot(values, counts_at) / total)
        variance = float(np.dot((values - mean) ** 2, counts_at) / total)
        return mean, math.sqrt(variance)

    def percentile(self, percentile: float) -> int:
        """The value at ``percentile`` (0..100): that share of recorded values is at or below it."""
        return self.percentiles([percentile])[percentile]

    def percentiles(self, percentiles: Iterable[float] = DEFAULT_PERCENTILES) -> dict[float, int]:
        """Several percentiles in one pass over the histogram."""
        wanted = [float(p) for p in percentiles]
        for p in wanted:
            if not 0.0 <= p <= 100.0:
                raise PercentileError(f"percentile must be within 0..100, got {p}")
        if not self.count:
            return {p: 0 for p in wanted}
        found = self._histogram.get_percentile_to_value_dict(wanted)
        return {p: int(found[p]) for p in wanted}

    def count_at_or_below(self, value_ns: int) -> int:
        """How many recorded values are at or below ``value_ns`` (to bucket precision)."""
        if value_ns < 0 or not self.count:
            return 0
        histogram = self._histogram
        if value_ns >= histogram.get_max_value():
            return self.count
        index = histogram.get_counts_array_index(value_ns)
        counts = np.ctypeslib.as_array(histogram.counts)[: histogram.counts_len]
        return int(counts[: index + 1].sum())

    def fraction_at_or_below(self, value_ns: int) -> float:
        """Share of values at or below ``value_ns``: the SLO view ("99.9 % of appends within 10 ms")."""
        return self.count_at_or_below(value_ns) / self.count if self.count else 0.0

    def summary(self) -> LatencySummary:
        values = self.percentiles(DEFAULT_PERCENTILES)
        mean, stddev = self._moments()
        return LatencySummary(
            count=self.count,
            min_ns=self.min_ns,
            max_ns=self.max_ns,
            mean_ns=mean,
            stddev_ns=stddev,
            p50_ns=values[50.0],
            p90_ns=values[90.0],
            p95_ns=values[95.0],
            p99_ns=values[99.0],
            p999_ns=values[99.9],
            p9999_ns=values[99.99],
        )

    def distribution(self, ticks_per_half_distance: int = 5) -> Iterator[DistributionPoint]:
        """(percentile, value) steps that get denser towards 100 %, for HdrHistogram-style plots."""
        if isinstance(ticks_per_half_distance, bool) or not isinstance(ticks_per_half_distance, int):
            raise PercentileError("ticks_per_half_distance must be a positive int")
        if ticks_per_half_distance < 1:
            raise PercentileError("ticks_per_half_distance must be a positive int")
        if not self.count:
            return
        for step in self._histogram.get_percentile_iterator(ticks_per_half_distance):
            yield DistributionPoint(float(step.percentile_level_iterated_to), int(step.value_iterated_to))

    def __repr__(self) -> str:
        # Cheap on purpose: reprs get computed in surprising places (asyncio formats task results).
        return f"<LatencyRecorder n={self.count} min={_human(self.min_ns)} max={_human(self.max_ns)}>"


def _check_interval(expected_interval_ns: int) -> None:
    if isinstance(expected_interval_ns, bool) or not isinstance(expected_interval_ns, int) or expected_interval_ns <= 0:
        raise PercentileError(f"expected_interval_ns must be a positive int, got {expected_interval_ns!r}")


def _human(value_ns: float) -> str:
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if value_ns >= scale:
            return f"{value_ns / scale:.3g}{unit}"
    return f"{value_ns:.0f}ns"
