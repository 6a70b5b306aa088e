"""Rate profiles: deterministic with a seed, right mean rates, right shapes, exact sharding."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from testkit.load import (
    Bursts,
    BusinessHours,
    ConstantRate,
    InvalidProfile,
    PiecewiseRate,
    PoissonArrivals,
    Ramp,
    RateProfile,
    Steps,
)

NS = 1_000_000_000


def seconds(profile: RateProfile) -> np.ndarray:
    return np.array(list(profile), dtype=np.int64) / NS


def within_poisson_noise(observed: int, expected: float, sigmas: float = 5.0) -> bool:
    return abs(observed - expected) <= sigmas * math.sqrt(expected)


PROFILES = [
    ConstantRate(rate=300, duration=2),
    PoissonArrivals(rate=300, duration=2, seed=5),
    Ramp(start_rate=0, end_rate=600, duration=2, seed=5),
    Steps(rates=(100, 0, 400), step_duration=1.0, seed=5),
    Bursts(base_rate=50, burst_rate=900, period=1.0, burst_duration=0.25, duration=3, seed=5),
    BusinessHours(peak_rate=400, duration=3, seed=5),
    PiecewiseRate(((0, 0), (1, 300), (1, 50), (2, 50)), arrivals="paced"),
]


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: type(p).__name__)
def test_same_seed_same_offsets_and_offsets_stay_inside_the_run(profile: RateProfile) -> None:
    first, second = list(profile), list(profile)
    assert first == second and len(first) > 0
    assert all(isinstance(offset, int) for offset in first[:10])
    assert first == sorted(first)
    assert 0 <= first[0] and first[-1] <= profile.duration_s * NS


def test_different_seeds_give_different_poisson_schedules() -> None:
    assert list(PoissonArrivals(300, 1, seed=1)) != list(PoissonArrivals(300, 1, seed=2))


def test_paced_constant_rate_is_evenly_spaced() -> None:
    offsets = np.array(list(ConstantRate(rate=1_000, duration=3)))
    assert offsets.size == 3_000
    assert offsets[0] == 0 and set(np.diff(offsets).tolist()) <= {999_999, 1_000_000, 1_000_001}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_poisson_arrivals_have_the_mean_rate_and_exponential_gaps(seed: int) -> None:
    rate, duration = 2_000.0, 10.0  # 20,000 arrivals: several numpy batches
    times = seconds(PoissonArrivals(rate=rate, duration=duration, seed=seed))
    assert within_poisson_noise(times.size, rate * duration)
    gaps = np.diff(times)
    assert gaps.mean() == pytest.approx(1 / rate, rel=0.05)
    assert stats.kstest(gaps, "expon", args=(0, 1 / rate)).pvalue > 1e-3
    # not paced: the coefficient of variation of exponential gaps is 1
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.05)


def test_ramp_follows_the_integral_of_its_rate() -> None:
    profile = Ramp(start_rate=200, end_rate=1_800, duration=4, seed=3)
    times = seconds(profile)
    for begin in range(4):
        expected = (profile.rate_at(begin) + profile.rate_at(begin + 1)) / 2  # linear: mean of ends
        observed = int(((times >= begin) & (times < begin + 1)).sum())
        assert within_poisson_noise(observed, expected), (begin, observed, expected)
    assert profile.expected_count() == pytest.approx(4_000)


def test_paced_ramp_is_exact() -> None:
    profile = Ramp(start_rate=0, end_rate=1_000, duration=2, arrivals="paced")
    times = seconds(profile)
    assert times.size == 1_000
    # cumulative count at t is 250 t^2 for this ramp
    for t in (0.5, 1.0, 1.5):
        assert int((times < t).sum()) == pytest.approx(250 * t * t, abs=1)


def test_steps_hold_each_level() -> None:
    profile = Steps(rates=(100, 0, 700), step_duration=2.0, seed=11)
    times = seconds(profile)
    counts = [int(((times >= 2 * i) & (times < 2 * i + 2)).sum()) for i in range(3)]
    assert counts[1] == 0
    assert within_poisson_noise(counts[0], 200) and within_poisson_noise(counts[2], 1_400)
    assert profile.duration_s == 6.0 and profile.rate_at(3.0) == 0.0 and profile.rate_at(5.0) == 700.0


def test_bursts_arrive_inside_their_windows() -> None:
    profile = Bursts(base_rate=100, burst_rate=2_000, period=2.0, burst_duration=0.5, duration=6.0, seed=4)
    windows = profile.burst_windows()
    assert windows == [(2.0, 2.5), (4.0, 4.5)]
    times = seconds(profile)
    in_bursts = sum(int(((times >= a) & (times < b)).sum()) for a, b in windows)
    assert within_poisson_noise(in_bursts, 2_000 * 1.0)
    assert within_poisson_noise(times.size - in_bursts, 100 * 5.0)
    assert profile.expected_count() == pytest.approx(2_000 + 500)


def test_business_hours_compress_a_day_with_a_quiet_night_and_a_busy_morning() -> None:
    profile = BusinessHours(peak_rate=2_000, duration=24.0, seed=9)  # one second per hour
    times = seconds(profile)
    per_hour = np.histogram(times, bins=24, range=(0, 24))[0]
    assert within_poisson_noise(times.size, profile.expected_count())
    night, late_morning = per_hour[1:5].mean(), per_hour[9:12].mean()
    assert late_morning > 10 * night
    assert int(np.argmax(per_hour)) in range(8, 17)  # the busiest hour is a working hour
    office = BusinessHours(peak_rate=2_000, duration=10.0, start_hour=8, end_hour=18, seed=9)
    assert office.duration_s == 10.0
    assert office.rate_at(0.0) == pytest.approx(2_000 * office.share_at_hour(8.0))
    assert office.mean_rate() > profile.mean_rate()  # the office window skips the night


def test_shards_partition_the_schedule_exactly() -> None:
    profile = PoissonArrivals(rate=3_000, duration=3, seed=21)
    whole = list(profile)
    shards = [list(profile.shard(index, 3)) for index in range(3)]
    assert sorted(sum(shards, [])) == whole
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert profile.shard(1, 3).expected_count() == pytest.approx(profile.expected_count() / 3)


def test_stretched_keeps_rates_and_scales_time() -> None:
    profile = Ramp(start_rate=100, end_rate=300, duration=10, seed=1)
    short = profile.stretched(2.0)
    assert short.duration_s == 2.0
    assert short.expected_count() == pytest.approx(profile.expected_count() / 5)
    assert short.rate_at(1.0) == pytest.approx(profile.rate_at(5.0))


def test_zero_rate_produces_nothing() -> None:
    assert list(ConstantRate(rate=0, duration=5)) == []
    assert list(PoissonArrivals(rate=0, duration=5)) == []


@pytest.mark.parametrize(
    "build",
    [
        lambda: ConstantRate(rate=-1, duration=1),
        lambda: ConstantRate(rate=float("nan"), duration=1),
        lambda: ConstantRate(rate=10, duration=0),
        lambda: PoissonArrivals(rate=10, duration=float("inf")),
        lambda: PoissonArrivals(rate=10, duration=1, seed=-3),
        lambda: Ramp(10, 20, 1, arrivals="bursty"),  # type: ignore[arg-type]
        lambda: Steps(rates=(), step_duration=1),
        lambda: Bursts(10, 100, period=1, burst_duration=2, duration=5),
        lambda: BusinessHours(100, 10, start_hour=18, end_hour=8),
        lambda: PiecewiseRate(((0, 10), (2, 10), (1, 10))),
        lambda: PiecewiseRate(((1, 10), (2, 10))),
        lambda: PiecewiseRate(((0, 10),)),
        lambda: PoissonArrivals(10, 1).shard(3, 3),
        lambda: ConstantRate(rate="fast", duration=1),  # type: ignore[arg-type]
    ],
)
def test_bad_profiles_raise_invalid_profile(build) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidProfile):
        build()
