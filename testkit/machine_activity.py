"""What else the machine did while a measurement ran: disk busy time and the CPU other processes took.

A long run's latency tail is often not the system under test: a multi-second ``fdatasync`` because another
process flushed gigabytes, or cores taken by a neighbour. Sampled beside the latency timeline, these let a
report say which seconds were slow *and* what the machine was doing then, instead of leaving a reader to
guess (or a regression gate to blame the code). Linux counters through psutil; loop, RAM and zram devices are
left out (a chaos run's loop disks are not the machine's disk).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import psutil

from testkit.periodic import PeriodicSampling

__all__ = ["ActivityRecorder", "ActivitySample", "MachineActivity", "activity_per_interval", "machine_note",
           "split_by_slow_intervals"]

_VIRTUAL_DISKS = ("loop", "ram", "zram")


@dataclass(frozen=True, slots=True)
class ActivitySample:
    """Cumulative counters at monotonic time ``t`` (seconds)."""

    t: float
    disk_busy_ms: dict[str, int]  # per physical disk: milliseconds with I/O in flight
    disk_written_bytes: int  # all storage devices (loop disks included), all processes
    cpu_busy_s: float  # the whole machine: every core's non-idle, non-iowait time (steal included)
    own_cpu_s: float  # the measured process (all threads; children are not counted)
    steal_s: float = 0.0  # the whole machine: time the hypervisor ran something else on our virtual cores


class MachineActivity:
    """Takes :class:`ActivitySample` snapshots of the machine and of one process (default: this one)."""

    def __init__(self, process: psutil.Process | None = None) -> None:
        self.process = process or psutil.Process()
        self.cpus = psutil.cpu_count() or 1

    def sample(self, t: float) -> ActivitySample:
        disks = {name: io for name, io in (psutil.disk_io_counters(perdisk=True) or {}).items()
                 if not name.startswith(_VIRTUAL_DISKS)}
        cpu = psutil.cpu_times()
        busy = cpu.user + cpu.nice + cpu.system + getattr(cpu, "irq", 0.0) + getattr(cpu, "softirq", 0.0) \
            + getattr(cpu, "steal", 0.0)
        own = self.process.cpu_times()
        # The total from psutil's own sum over whole storage devices: partitions and device-mapper volumes listed
        # per disk would count every write two or three times.
        total = psutil.disk_io_counters(perdisk=False)
        return ActivitySample(t, {name: int(getattr(io, "busy_time", 0)) for name, io in disks.items()},
                              total.write_bytes if total is not None else 0, busy, own.user + own.system,
                              getattr(cpu, "steal", 0.0))


class ActivityRecorder:
    """:class:`MachineActivity` sampled every ``interval`` seconds by a thread, on the wall clock
    (``time.time()``): what a run keyed by wall seconds (a distributed load run, whose workers are other
    processes) lines its seconds up with. A process that ends stops the sampling and keeps what was taken."""

    def __init__(self, process: psutil.Process | None = None, *, interval: float = 1.0) -> None:
        self._sampling = PeriodicSampling(self._take, interval, "machine-activity")
        self.activity = MachineActivity(process)
        self.samples: list[ActivitySample] = []

    def start(self) -> None:
        self._sampling.start()

    def stop(self) -> None:
        self._sampling.stop()

    def per_interval(self) -> list[dict[str, float]]:
        """:func:`activity_per_interval` of what was sampled (``t``: wall time at each interval's end)."""
        return activity_per_interval(self.samples, self.activity.cpus)

    def _take(self) -> bool:
        try:
            self.samples.append(self.activity.sample(time.time()))
        except psutil.Error:  # the watched process ended
            return False
        return True


def activity_per_interval(samples: Sequence[ActivitySample], cpus: int) -> list[dict[str, float]]:
    """Per interval between consecutive samples (labelled by its end): the busiest disk's busy share (%),
    megabytes written per second by every process, and the shares of all cores (%) that the measured process,
    the other processes and the hypervisor (steal: our virtual cores lent to another machine) took."""
    rows = []
    for before, after in zip(samples, samples[1:]):
        seconds = after.t - before.t
        if seconds <= 0:
            continue
        busiest = max((after.disk_busy_ms[name] - busy for name, busy in before.disk_busy_ms.items()
                       if name in after.disk_busy_ms), default=0)
        own = after.own_cpu_s - before.own_cpu_s
        steal = after.steal_s - before.steal_s
        others = (after.cpu_busy_s - before.cpu_busy_s) - own - steal
        rows.append({"t": after.t,
                     "busiest_disk_pct": min(100.0, 100.0 * busiest / 1000.0 / seconds),
                     "disk_write_mb_s": (after.disk_written_bytes - before.disk_written_bytes) / 1e6 / seconds,
                     "measured_process_cpu_pct": _share(own, seconds, cpus),
                     "other_processes_cpu_pct": _share(others, seconds, cpus),
                     "steal_pct": _share(steal, seconds, cpus)})
    return rows


def _share(cpu_seconds: float, seconds: float, cpus: int) -> float:
    return max(0.0, min(100.0, 100.0 * cpu_seconds / seconds / cpus))


def split_by_slow_intervals(rows: Sequence[dict[str, float]], slow: Sequence[tuple[float, float]]
                            ) -> dict[str, dict[str, float]]:
    """Mean activity during the intervals that overlap a slow span (``(start, end)`` in the samples' clock)
    against the rest: ``{"slow": {...}, "other": {...}}``, each with ``intervals`` counted."""
    keys = ("busiest_disk_pct", "disk_write_mb_s", "measured_process_cpu_pct", "other_processes_cpu_pct", "steal_pct")
    groups: dict[str, list[dict[str, float]]] = {"slow": [], "other": []}
    for index, row in enumerate(rows):
        start = rows[index - 1]["t"] if index else row["t"] - 1.0
        hit = any(lo < row["t"] and hi > start for lo, hi in slow)
        groups["slow" if hit else "other"].append(row)
    return {name: {"intervals": float(len(group)),
                   **{key: (sum(r[key] for r in group) / len(group) if group else 0.0) for key in keys}}
            for name, group in groups.items()}


def machine_note(group: dict[str, float]) -> str:
    """One group of :func:`split_by_slow_intervals` in words: ``(N s): busiest disk ...``."""
    return (f"({group['intervals']:.0f} s): busiest disk {group['busiest_disk_pct']:.0f}% busy, "
            f"{group['disk_write_mb_s']:.1f} MB/s written; of the CPUs, the measured process "
            f"{group['measured_process_cpu_pct']:.0f}%, other processes {group['other_processes_cpu_pct']:.0f}%, "
            f"stolen by the hypervisor {group['steal_pct']:.0f}%")
