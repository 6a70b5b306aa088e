"""LatencyRecorder: percentiles against numpy, merging across real processes, transport, CO correction."""

from __future__ import annotations

import multiprocessing
import pickle
from time import monotonic_ns

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from testkit.percentiles import (
    DEFAULT_PERCENTILES,
    HistogramSpec,
    IncompatibleRecorders,
    InvalidHistogramEncoding,
    InvalidHistogramSpec,
    LatencyOutOfRange,
    LatencyRecorder,
    PercentileError,
)

SEED = 20240611


def lognormal_latencies(count: int, seed: int = SEED) -> np.ndarray:
    """Latency-like data: median about 1 ms with a long tail, as integers in ns."""
    rng = np.random.default_rng(seed)
    return np.maximum(1, rng.lognormal(mean=np.log(1e6), sigma=1.2, size=count)).astype(np.int64)


def fed(values: np.ndarray, spec: HistogramSpec | None = None) -> LatencyRecorder:
    recorder = (spec or HistogramSpec()).new_recorder()
    for value in values.tolist():
        recorder.record(value)
    return recorder


def order_statistic(values: np.ndarray, percentile: float) -> int:
    """The exact percentile by rank (the k-th smallest value, k = p * n / 100) from numpy's sort.

    ``np.percentile(..., method="inverted_cdf")`` would compute ceil(0.999 * 1000) = 1000 through float
    rounding; ranks here are whole numbers by construction.
    """
    rank = round(percentile * values.size / 100)
    assert rank == percentile * values.size / 100 or abs(rank - percentile * values.size / 100) < 1e-6
    return int(np.sort(values)[max(rank, 1) - 1])


def resolution_bound(value: int) -> int:
    """Largest overshoot of a 3-significant-figure HdrHistogram bucket: its width, at most value / 1024."""
    return value // 1024 + 1


def test_percentiles_match_numpy_within_histogram_resolution() -> None:
    values = lognormal_latencies(10_000)  # ranks p * 10_000 / 100 are whole numbers for every default percentile
    recorder = fed(values)
    got = recorder.percentiles(DEFAULT_PERCENTILES)
    for percentile in DEFAULT_PERCENTILES:
        exact = order_statistic(values, percentile)
        assert exact <= got[percentile] <= exact + resolution_bound(exact), percentile
    summary = recorder.summary()
    assert summary.count == values.size
    assert summary.min_ns == pytest.approx(int(values.min()), rel=1e-3, abs=1)
    assert int(values.max()) <= summary.max_ns <= int(values.max()) + resolution_bound(int(values.max()))
    assert summary.mean_ns == pytest.approx(float(values.mean()), rel=1e-3)
    assert summary.stddev_ns == pytest.approx(float(values.std()), rel=1e-2)
    assert [summary.p50_ns, summary.p90_ns, summary.p95_ns, summary.p99_ns, summary.p999_ns, summary.p9999_ns] == [
        got[p] for p in DEFAULT_PERCENTILES
    ]


def test_small_values_are_exact() -> None:
    values = np.arange(1, 1001, dtype=np.int64)  # below 2048 ns every value has its own bucket
    recorder = fed(values)
    for percentile in (10.0, 50.0, 90.0, 99.0, 99.9, 100.0):
        assert recorder.percentile(percentile) == order_statistic(values, percentile)
    assert (recorder.min_ns, recorder.max_ns, recorder.count) == (1, 1000, 1000)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10**12), min_size=1, max_size=300), st.floats(0.0, 100.0))
def test_any_percentile_is_a_recorded_value_rounded_up_to_its_bucket(values: list[int], percentile: float) -> None:
    recorder = fed(np.array(values, dtype=np.int64))
    got = recorder.percentile(percentile)
    ordered = sorted(values)
    rank = max(1, int(percentile * len(values) / 100 + 0.5))  # HdrHistogram's rank rule (rounds half up)
    exact = ordered[min(rank, len(values)) - 1]
    if percentile == 0.0:
        assert got <= exact  # p0 reports the lowest value of the minimum's bucket
    else:
        assert exact <= got <= exact + resolution_bound(exact)


def _record_and_encode(values: list[int]) -> tuple[int, str]:
    """Runs in a worker process: record a share of the values and ship the histogram as text."""
    import os

    recorder = LatencyRecorder()
    for value in values:
        recorder.record(value)
    return os.getpid(), recorder.encode()


def test_histograms_merged_across_processes_equal_one_histogram_fed_all_values() -> None:
    values = lognormal_latencies(20_000, seed=SEED + 1)
    shares = [values[index::2].tolist() for index in range(2)]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        replies = pool.map(_record_and_encode, shares)
    pids = {pid for pid, _ in replies}
    assert len(pids) == 2 and multiprocessing.current_process().pid not in pids  # really two other processes
    merged = LatencyRecorder()
    for _, encoded in replies:
        merged += LatencyRecorder.decode(encoded)
    single = fed(values)
    assert merged == single
    assert merged.summary() == single.summary()
    assert merged.percentiles() == single.percentiles()


def test_encode_decode_round_trip_keeps_values_range_and_precision() -> None:
    spec = HistogramSpec(lowest_ns=1_000, highest_ns=60_000_000_000, significant_figures=2)
    recorder = fed(lognormal_latencies(2_000), spec)
    encoded = recorder.encode()
    assert isinstance(encoded, str) and encoded.isascii()
    decoded = LatencyRecorder.decode(encoded)
    assert decoded.spec == spec
    assert decoded == recorder
    assert decoded.summary() == recorder.summary()
    assert LatencyRecorder.decode(encoded.encode("ascii")) == recorder
    assert pickle.loads(pickle.dumps(recorder)) == recorder


@pytest.mark.parametrize("garbage", ["", "not base64 at all!", "aGVsbG8gd29ybGQ=", "ünïcode", b"\x00\x01"])
def test_decoding_garbage_raises_a_typed_error(garbage: str | bytes) -> None:
    with pytest.raises(InvalidHistogramEncoding):
        LatencyRecorder.decode(garbage)


def test_merge_operators_and_empty_merges() -> None:
    values = lognormal_latencies(1_000)
    left, right = fed(values[:400]), fed(values[400:])
    total = left + right
    assert total == fed(values)
    assert left.count == 400  # ``+`` leaves its operands alone
    left += right
    assert left == total
    before = total.summary()
    total.merge(LatencyRecorder())  # an empty recorder must not drag the minimum to 0
    assert total.summary() == before
    empty = LatencyRecorder()
    empty.merge(right)
    assert empty == right and empty.min_ns == right.min_ns
    with pytest.raises(TypeError):
        total.merge([1, 2, 3])  # type: ignore[arg-type]


def test_merging_values_beyond_the_range_is_refused() -> None:
    wide = LatencyRecorder(highest_ns=10**12)
    wide.record(10**11)
    narrow = LatencyRecorder(highest_ns=10**6)
    with pytest.raises(IncompatibleRecorders):
        narrow.merge(wide)


def test_coordinated_omission_correction_backfills_missed_samples() -> None:
    interval = 100_000_000  # the client meant to send every 100 ms
    # A ~1 s stall, chosen at the top of its 3-significant-figure bucket so that correcting the raw value
    # (live) and correcting the bucketed value (after the fact) back-fill the same samples.
    stall = 1_000_341_503
    recorder = LatencyRecorder()
    for _ in range(99):
        recorder.record(1_000_000)
    recorder.record(stall)  # the client sent nothing for 1 s: 10 requests it meant to send are missing
    corrected = recorder.corrected(interval)
    expected = LatencyRecorder()
    for _ in range(99):
        expected.record(1_000_000)
    for missed in range(11):
        expected.record(stall - missed * interval)
    assert corrected == expected
    assert corrected.count == 110
    assert recorder.count == 100  # the view is a copy
    assert recorder.percentile(99) < 2_000_000 < 800_000_000 < corrected.percentile(99)
    live = LatencyRecorder()
    for _ in range(99):
        live.record_corrected(1_000_000, interval)
    live.record_corrected(stall, interval)
    assert live == corrected


def test_record_helpers_measure_elapsed_time() -> None:
    recorder = LatencyRecorder()
    outer_start = monotonic_ns()
    with recorder.time():
        inner_start = monotonic_ns()
        sum(range(20_000))
        inner = monotonic_ns() - inner_start
    outer = monotonic_ns() - outer_start
    assert recorder.count == 1
    assert inner <= recorder.max_ns and recorder.min_ns <= outer
    start = monotonic_ns()
    elapsed = recorder.record_since(start)
    assert 0 <= elapsed <= monotonic_ns() - start and recorder.count == 2
    with pytest.raises(RuntimeError), recorder.time():
        raise RuntimeError("failures are timed too")
    assert recorder.count == 3


def test_count_and_fraction_at_or_below_a_threshold() -> None:
    values = lognormal_latencies(10_000)
    recorder = fed(values)
    for threshold in (100_000, 1_000_000, 5_000_000):
        exact = int((values <= threshold).sum())
        # bucket precision: values within the threshold's bucket may be counted too
        slack = int(((values > threshold) & (values <= threshold + resolution_bound(threshold))).sum())
        assert exact <= recorder.count_at_or_below(threshold) <= exact + slack
    assert recorder.fraction_at_or_below(recorder.max_ns) == 1.0
    assert recorder.count_at_or_below(-1) == 0 and LatencyRecorder().fraction_at_or_below(10) == 0.0


def test_distribution_is_monotonic_and_ends_at_the_maximum() -> None:
    recorder = fed(lognormal_latencies(5_000))
    points = list(recorder.distribution(ticks_per_half_distance=5))
    assert len(points) > 20
    percentiles = [p.percentile for p in points]
    values = [p.value_ns for p in points]
    assert percentiles == sorted(percentiles) and values == sorted(values)
    assert percentiles[-1] == 100.0 and values[-1] == recorder.max_ns
    assert percentiles[0] == 0.0
    assert list(LatencyRecorder().distribution()) == []


def test_bad_input_raises_typed_errors() -> None:
    recorder = LatencyRecorder(highest_ns=1_000_000)
    with pytest.raises(LatencyOutOfRange):
        recorder.record(-1)
    with pytest.raises(LatencyOutOfRange):
        recorder.record(10**9)
    with pytest.raises(TypeError):
        recorder.record("12")  # type: ignore[arg-type]
    with pytest.raises(PercentileError):
        recorder.percentile(100.5)
    with pytest.raises(PercentileError):
        recorder.corrected(0)
    with pytest.raises(PercentileError):
        list(recorder.distribution(0))
    for bad in ({"lowest_ns": 0}, {"highest_ns": 1}, {"significant_figures": 6}, {"significant_figures": 0},
                {"highest_ns": 1.5e9}):
        with pytest.raises(InvalidHistogramSpec):
            HistogramSpec(**bad)  # type: ignore[arg-type]
    assert recorder.count == 0  # nothing half-recorded


def test_empty_recorder_reports_zeros_and_reset_empties() -> None:
    recorder = LatencyRecorder()
    summary = recorder.summary()
    assert summary.count == 0 and summary.p99_ns == 0 and summary.max_ns == 0 and str(summary) == "n=0"
    recorder.record(5_000)
    assert "p99=" in str(recorder.summary())
    recorder.reset()
    assert recorder.count == 0 and recorder == LatencyRecorder()
