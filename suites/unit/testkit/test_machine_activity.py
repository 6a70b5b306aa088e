"""Machine activity beside a measurement: the arithmetic of busy shares, and real counters that move."""

from __future__ import annotations

import time

import psutil
import pytest

from testkit.machine_activity import (
    ActivityRecorder,
    ActivitySample,
    MachineActivity,
    activity_per_interval,
    machine_note,
    split_by_slow_intervals,
)

pytestmark = pytest.mark.ci


def _at(t: float, busy_ms: int, written: int, cpu: float, own: float, steal: float = 0.0) -> ActivitySample:
    return ActivitySample(t, {"vda": busy_ms}, written, cpu, own, steal)


def test_each_interval_gives_disk_busy_share_write_rate_and_who_took_the_cpu() -> None:
    samples = [_at(0.0, 1_000, 0, 10.0, 1.0, 0.25), _at(2.0, 2_000, 8_000_000, 13.0, 1.5, 0.75),
               _at(3.0, 2_000, 8_000_000, 13.5, 2.0, 0.75)]
    first, second = activity_per_interval(samples, cpus=2)
    # 3 busy core-seconds in 2 s on 2 cores: 0.5 the measured process, 0.5 stolen, 2 other processes
    assert first == {"t": 2.0, "busiest_disk_pct": 50.0, "disk_write_mb_s": 4.0, "measured_process_cpu_pct": 12.5,
                     "other_processes_cpu_pct": 50.0, "steal_pct": 12.5}
    assert second["busiest_disk_pct"] == 0.0 and second["other_processes_cpu_pct"] == 0.0
    assert second["measured_process_cpu_pct"] == 25.0 and second["steal_pct"] == 0.0


def test_slow_spans_split_the_intervals_they_overlap_from_the_rest() -> None:
    rows = [{"t": float(t), "busiest_disk_pct": 100.0 if t in (3, 4) else 10.0, "disk_write_mb_s": 1.0,
             "measured_process_cpu_pct": 40.0, "other_processes_cpu_pct": 5.0, "steal_pct": 0.0} for t in range(1, 11)]
    split = split_by_slow_intervals(rows, [(2.5, 4.0)])
    assert split["slow"]["intervals"] == 2 and split["slow"]["busiest_disk_pct"] == 100.0
    assert split["other"]["intervals"] == 8 and split["other"]["busiest_disk_pct"] == 10.0
    assert split_by_slow_intervals(rows, [])["slow"]["intervals"] == 0
    assert machine_note(split["slow"]) == ("(2 s): busiest disk 100% busy, 1.0 MB/s written; of the CPUs, the measured "
                                           "process 40%, other processes 5%, stolen by the hypervisor 0%")


def test_real_counters_see_this_process_burn_cpu() -> None:
    activity = MachineActivity()
    before = activity.sample(time.monotonic())
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        pass
    after = activity.sample(time.monotonic())
    assert after.own_cpu_s - before.own_cpu_s >= 0.2
    assert after.cpu_busy_s - before.cpu_busy_s >= 0.2
    assert after.steal_s >= before.steal_s >= 0.0
    assert all(after.disk_busy_ms[name] >= busy for name, busy in before.disk_busy_ms.items())


def test_a_recorder_samples_another_process_on_the_wall_clock_until_it_ends() -> None:
    import subprocess
    import sys

    burner = subprocess.Popen([sys.executable, "-c", "import time\nend = time.process_time() + 0.6\n"
                               "while time.process_time() < end: pass"])
    try:
        recorder = ActivityRecorder(psutil.Process(burner.pid), interval=0.05)
        started = time.time()
        recorder.start()
        burner.wait(timeout=60)
        recorder.stop()
    finally:
        if burner.poll() is None:
            burner.kill()
            burner.wait()
    rows = recorder.per_interval()
    assert rows and all(started - 1 <= row["t"] <= time.time() for row in rows)
    assert recorder.samples[-1].own_cpu_s - recorder.samples[0].own_cpu_s >= 0.2  # the child's CPU, not ours
    assert max(row["measured_process_cpu_pct"] for row in rows) > 0
