"""Machine activity beside a measurement: the arithmetic of busy shares, and real counters that move."""

from __future__ import annotations

import time

import pytest

from testkit.machine_activity import ActivitySample, MachineActivity, activity_per_interval, split_by_slow_intervals

pytestmark = pytest.mark.ci


def _at(t: float, busy_ms: int, written: int, cpu: float, own: float) -> ActivitySample:
    return ActivitySample(t, {"vda": busy_ms}, written, cpu, own)


def test_each_interval_gives_disk_busy_share_write_rate_and_the_cpu_other_processes_took() -> None:
    samples = [_at(0.0, 1_000, 0, 10.0, 1.0), _at(2.0, 2_000, 8_000_000, 13.0, 1.5), _at(3.0, 2_000, 8_000_000, 13.5, 2.0)]
    first, second = activity_per_interval(samples, cpus=2)
    assert first == {"t": 2.0, "busiest_disk_pct": 50.0, "disk_write_mb_s": 4.0, "other_processes_cpu_pct": 62.5}
    assert second["busiest_disk_pct"] == 0.0 and second["other_processes_cpu_pct"] == 0.0


def test_slow_spans_split_the_intervals_they_overlap_from_the_rest() -> None:
    rows = [{"t": float(t), "busiest_disk_pct": 100.0 if t in (3, 4) else 10.0, "disk_write_mb_s": 1.0,
             "other_processes_cpu_pct": 5.0} for t in range(1, 11)]
    split = split_by_slow_intervals(rows, [(2.5, 4.0)])
    assert split["slow"]["intervals"] == 2 and split["slow"]["busiest_disk_pct"] == 100.0
    assert split["other"]["intervals"] == 8 and split["other"]["busiest_disk_pct"] == 10.0
    assert split_by_slow_intervals(rows, [])["slow"]["intervals"] == 0


def test_real_counters_see_this_process_burn_cpu() -> None:
    activity = MachineActivity()
    before = activity.sample(time.monotonic())
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        pass
    after = activity.sample(time.monotonic())
    assert after.own_cpu_s - before.own_cpu_s >= 0.2
    assert after.cpu_busy_s - before.cpu_busy_s >= 0.2
    assert all(after.disk_busy_ms[name] >= busy for name, busy in before.disk_busy_ms.items())
