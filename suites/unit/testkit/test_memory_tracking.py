"""Memory helpers against real allocations, a real child process and real RSS; crafted series for the verdict."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import psutil
import pytest
from scipy import stats

from testkit.memory import (
    InsufficientSamplesError,
    MemoryTracker,
    RssSampler,
    TracemallocSession,
    bytes_per_item,
    leak_verdict,
)
from testkit.results import MemoryRecord

MIB = 1024 * 1024


def _allocate_blocks(count: int, size: int) -> list[bytes]:
    return [bytes([index % 256]) * size for index in range(count)]  # the growth site the tests look for


def test_top_growth_points_at_the_line_that_allocated() -> None:
    with TracemallocSession() as session:
        kept = _allocate_blocks(2_000, 4_096)
        growth = session.top_growth(limit=3)

    site, size_diff, count_diff = growth[0]
    assert site == f"{__file__}:{_allocate_blocks.__code__.co_firstlineno + 1}"
    assert 2_000 * 4_096 <= size_diff <= 2_000 * (4_096 + 200)
    assert count_diff >= 2_000
    assert len(kept) == 2_000
    assert not tracemalloc.is_tracing(), "the session stops the tracing it started"


def test_a_session_leaves_tracing_it_did_not_start_running() -> None:
    tracemalloc.start()
    try:
        with TracemallocSession() as session:
            current, peak = session.traced_bytes()
            assert 0 < current <= peak
        assert tracemalloc.is_tracing()
    finally:
        tracemalloc.stop()


def test_the_sampler_sees_resident_memory_grow_and_records_the_peak() -> None:
    with RssSampler(interval=0.01) as sampler:
        before = psutil.Process().memory_info().rss
        block = np.ones(100 * MIB, dtype=np.uint8)  # touched pages: really resident
        seen = len(sampler.samples)
        assert sampler.wait_for_samples(seen + 2, timeout=5.0)
        del block
    samples = sampler.samples

    assert sampler.peak >= before + 95 * MIB
    times = [t for t, _ in samples]
    assert times == sorted(times) and len(samples) >= 4
    assert not sampler.running


def test_the_sampler_follows_a_child_process_and_stops_when_it_exits() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; block = b'x' * (64 * 1024 * 1024); print('ready', flush=True); "
                               "sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        sampler = RssSampler(interval=0.01, pid=child.pid)
        sampler.start()
        assert sampler.wait_for_samples(3, timeout=5.0)
        assert sampler.peak >= 64 * MIB
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=10)
        deadline = time.monotonic() + 5.0
        while sampler.error is None and time.monotonic() < deadline:
            sampler.wait_for_samples(10**9, timeout=0.05)
        assert isinstance(sampler.error, psutil.NoSuchProcess)
        sampler.stop()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_bytes_per_item_from_traced_allocations_matches_the_objects_stored() -> None:
    payload_size = 1_000
    expected = sys.getsizeof(b"x" * payload_size) + 8  # the bytes object plus the list's pointer to it
    with MemoryTracker(rss_interval=0.05) as memory:
        before = memory.mark()
        kept = _allocate_blocks(10_000, payload_size)
        after = memory.mark()

    per_item = memory.bytes_per_item(before, after, len(kept), measure="traced")
    assert expected * 0.95 <= per_item <= expected * 1.10
    assert memory.top_growth(1)[0].size_diff >= 10_000 * payload_size, "growth is kept after stop"
    record = memory.to_record()
    assert isinstance(record, MemoryRecord) and record.peak_rss_bytes >= after.rss
    assert MemoryRecord.from_dict(record.to_dict()) == record


def test_bytes_per_item_refuses_a_count_that_is_not_positive() -> None:
    assert bytes_per_item(1_000, 3_000, 10) == 200.0
    for bad in (0, -5, 2.5, True):
        with pytest.raises(ValueError, match="positive integer"):
            bytes_per_item(0, 1, bad)  # type: ignore[arg-type]


_SOAK = """
import json, sys
from testkit.memory import RssSampler
MIB = 1 << 20
leak, ticks = sys.argv[1] == "leak", int(sys.argv[2])
kept = []
with RssSampler(interval=0.01) as sampler:
    for tick in range(ticks):
        block = bytes([tick % 256]) * MIB
        if leak:
            kept.append(block)
        del block
        assert sampler.wait_for_samples(len(sampler.samples) + 1, timeout=5.0)
print(json.dumps(sampler.samples))
"""


def _soak(leak: bool, ticks: int = 60) -> list[tuple[float, int]]:
    """Allocate 1 MiB per sampler tick, keeping it (a leak) or dropping it (steady state).

    In a fresh interpreter: in this one, earlier tests leave freed heap behind that new blocks reuse
    without any change in RSS, which would hide the leak from the very measurement under test.
    """
    done = subprocess.run(
        [sys.executable, "-c", _SOAK, "leak" if leak else "steady", str(ticks)],
        capture_output=True, text=True, timeout=120, check=True,
    )
    return [(t, rss) for t, rss in json.loads(done.stdout)]


def test_a_real_steady_leak_is_detected_and_a_steady_state_is_not() -> None:
    leak_samples = _soak(leak=True)
    leaking = leak_verdict(leak_samples, max_growth_per_hour=0.01)
    steady = leak_verdict(_soak(leak=False), max_growth_per_hour=0.01)

    # The leak really happened (about 60 MiB kept) before the verdict is judged.
    assert leak_samples[-1][1] - leak_samples[0][1] >= 40 * MIB
    assert leaking.leaking, leaking.reason
    # Not r-squared: RSS grows per tick, and on a loaded 2-core machine ticks are not evenly spaced in
    # time, so the fit's linearity measures the scheduler; the slope's confidence interval does not.
    assert leaking.slope_low > 0
    assert not steady.leaking, steady.reason


def _series(seconds: float, rss: np.ndarray) -> list[tuple[float, int]]:
    return list(zip(np.linspace(0, seconds, len(rss)).tolist(), rss.astype(int).tolist(), strict=True))


def test_noise_and_garbage_collection_sawtooth_are_not_a_leak() -> None:
    rng = np.random.default_rng(7)
    base = 200 * MIB + rng.normal(0, 3 * MIB, 600)
    sawtooth = (np.arange(600) % 50) * 0.2 * MIB  # grows 10 MiB, then a collection frees it, again and again
    spikes = np.where(rng.random(600) < 0.02, 80 * MIB, 0)  # rare transient spikes

    verdict = leak_verdict(_series(600, base + sawtooth + spikes))

    assert not verdict.leaking, verdict.reason


def test_a_slow_climb_buried_in_noise_is_still_a_leak() -> None:
    rng = np.random.default_rng(8)
    climb = np.linspace(0, 6 * MIB, 600)  # 6 MiB in 10 minutes: about 18 %/h of 200 MiB
    verdict = leak_verdict(_series(600, 200 * MIB + climb + rng.normal(0, 3 * MIB, 600)))

    assert verdict.leaking, verdict.reason
    assert 0.10 < verdict.relative_per_hour < 0.30


def test_growth_during_the_warm_up_is_excluded() -> None:
    rng = np.random.default_rng(9)
    warm_up = np.linspace(100 * MIB, 300 * MIB, 100)
    plateau = np.full(500, 300 * MIB)
    rss = np.concatenate([warm_up, plateau]) + rng.normal(0, MIB, 600)

    after_warm_up = leak_verdict(_series(600, rss), warmup_fraction=0.2)
    with_warm_up = leak_verdict(_series(600, rss), warmup_fraction=0.0)

    assert not after_warm_up.leaking and not after_warm_up.inconclusive, after_warm_up.reason
    # Judged with it, the warm-up's climb breaks the limit; a climb that then stops is no steady leak, and
    # its samples (one movement) are worth a handful of independent ones, so it is inconclusive, not a leak.
    assert with_warm_up.relative_per_hour > 0.01 and with_warm_up.inconclusive, with_warm_up.reason
    assert not with_warm_up.leaking


def _teeth(period: float, phase: float, leak_bytes_per_s: float = 0.0) -> list[tuple[int, int]]:
    """Ten minutes of RSS sampled every second that climbs 14 MiB over ``period`` seconds and falls back (an
    index growing into memory it then frees, as the HTTP soak's server does), plus a steady leak."""
    t = np.arange(600.0)
    rng = np.random.default_rng(11)
    rss = 300 * MIB + ((t + phase) % period) / period * 14 * MIB + rng.normal(0, 0.3 * MIB, 600) + leak_bytes_per_s * t
    return _series(600, rss)


@pytest.mark.parametrize(("period", "phase"), [(90, 30), (100, 0), (120, 0)])
def test_slow_steps_that_always_come_back_are_not_a_leak_however_they_fall_in_the_window(period: float,
                                                                                           phase: float) -> None:
    # These windows start low and end high: independent-sample intervals put their slope (4-12 KB/s, well
    # over 1 %/h of 300 MiB) above zero, and called the same process leaking or not by where the steps fell.
    samples = _teeth(period, phase)
    plain = stats.theilslopes([r for _, r in samples[120:]], [t for t, _ in samples[120:]])
    assert plain.low_slope > 0 and plain.slope * 3600 / (307 * MIB) > 0.01  # the old judgement's "leaking"

    verdict = leak_verdict(samples)

    assert not verdict.leaking, verdict.reason
    assert verdict.inconclusive and verdict.effective_samples < 50, verdict.reason


@pytest.mark.parametrize(("period", "phase"), [(90, 30), (100, 0), (120, 0)])
def test_a_leak_riding_on_slow_steps_is_still_found(period: float, phase: float) -> None:
    verdict = leak_verdict(_teeth(period, phase, leak_bytes_per_s=100_000))  # 48 MB over the judged 8 minutes

    assert verdict.leaking, verdict.reason
    assert 70_000 < verdict.slope_low < 100_000 < verdict.slope_high


def test_an_absolute_rate_threshold_replaces_the_relative_one() -> None:
    climb = _series(100, 500 * MIB + np.linspace(0, 100_000, 200))  # 1,000 B/s

    assert leak_verdict(climb, max_bytes_per_s=500).leaking
    assert not leak_verdict(climb, max_bytes_per_s=5_000).leaking


def test_a_long_soak_is_binned_before_the_quadratic_estimator() -> None:
    rng = np.random.default_rng(10)
    rss = 300 * MIB + rng.normal(0, 2 * MIB, 200_000)
    started = time.process_time()  # CPU time: a loaded machine's waits are not the estimator's cost

    verdict = leak_verdict(_series(72 * 3600, rss))

    assert not verdict.leaking and verdict.samples_used == 2_000
    assert time.process_time() - started < 10


def test_too_few_samples_or_bad_parameters_raise() -> None:
    with pytest.raises(InsufficientSamplesError):
        leak_verdict([(0.0, 1), (1.0, 2)])
    with pytest.raises(InsufficientSamplesError, match="after the warm-up"):
        leak_verdict([(0.0, 1)] * 20 + [(10.0, 2)] * 5, warmup_fraction=0.5)
    with pytest.raises(ValueError, match="warmup_fraction"):
        leak_verdict(_series(10, np.ones(20)), warmup_fraction=1.0)
    with pytest.raises(ValueError, match="pairs"):
        leak_verdict([(0.0, 1, 2)] * 20)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="interval"):
        RssSampler(interval=0)


def test_with_independent_residuals_the_interval_is_scipys_theil_sen_interval() -> None:
    """Residuals that alternate in sign have no positive lag-1 correlation: nothing to widen, so the slope
    and its interval are exactly the textbook ones (ties in time and in RSS included)."""
    rng = np.random.default_rng(12)
    t = np.repeat(np.arange(150.0), 2)  # every time twice
    rss = np.round(300 * MIB + 2_000 * t + np.where(np.arange(300) % 2, 1, -1) * rng.uniform(0, MIB, 300), -5)
    verdict = leak_verdict(list(zip(t.tolist(), rss.tolist(), strict=True)), warmup_fraction=0.0)
    textbook = stats.theilslopes(rss, t, alpha=0.95)

    assert verdict.effective_samples == 300
    assert (verdict.slope_bytes_per_s, verdict.slope_low, verdict.slope_high) == pytest.approx(
        (textbook.slope, textbook.low_slope, textbook.high_slope))
