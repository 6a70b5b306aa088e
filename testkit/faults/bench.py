"""``python -m testkit.faults probe|bench``: which fault mechanisms work here, and what they cost.

``probe`` prints every mechanism probe with its reason. ``bench`` times each injector (medians
over ``--repeat`` runs) and repeats the power-cut experiment to show what survives a cut, so the
figures quoted in reports come from a script, not from timed unit tests.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from testkit.faults import ChildOutcome, ChildProcess, IoFault, LoopExt4, SmallTmpfs, fill, free_space, kill9
from testkit.faults.probe import Unavailable, all_probes
from testkit.faults.strace_inject import StraceFault

_WRITES_PER_CHILD = 20_000


def _probe_command() -> int:
    width = max(len(name) for name in all_probes())
    for name, result in all_probes().items():
        status = "yes" if not isinstance(result, Unavailable) else "NO "
        text = result.reason if isinstance(result, Unavailable) else result.detail
        print(f"{name:<{width}}  {status}  {text}")
    return 0


class _Timings:
    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = {}

    @contextmanager
    def measure(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.samples.setdefault(name, []).append((time.perf_counter() - start) * 1e3)

    def print(self) -> None:
        width = max(len(name) for name in self.samples)
        print(f"{'operation':<{width}}  {'median ms':>10}  {'min ms':>8}  {'max ms':>8}  n")
        for name, values in self.samples.items():
            print(
                f"{name:<{width}}  {statistics.median(values):>10.2f}  {min(values):>8.2f}  {max(values):>8.2f}"
                f"  {len(values)}"
            )


def _write_loop(path: str, count: int) -> float:
    """Nanoseconds per os.write of one byte (run in a child, with or without the shim)."""
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    start = time.perf_counter_ns()
    for _ in range(count):
        os.write(fd, b"x")
    elapsed = time.perf_counter_ns() - start
    os.close(fd)
    return elapsed / count


def _value(outcome: ChildOutcome) -> float:
    if outcome.error is not None:
        raise RuntimeError(f"benchmark child failed: {outcome.error.traceback}")
    return float(outcome.value)


def _noop() -> None:
    return None


def _power_cut_trial(timings: _Timings) -> tuple[bool, bool, bool]:
    """(fsynced data intact, unsynced append gone, never-fsynced file gone) after one cut."""
    with LoopExt4(8) as disk:
        durable = disk / "durable"
        with open(durable, "wb") as fh:
            fh.write(b"A" * 4096)
            fh.flush()
            os.fsync(fh.fileno())
        dir_fd = os.open(disk.path, os.O_RDONLY)
        os.fsync(dir_fd)
        os.close(dir_fd)
        with open(durable, "ab") as fh:
            fh.write(b"B" * 4096)
        (disk / "never-synced").write_bytes(b"C" * 4096)
        with timings.measure("cut_power (ioctl + EIO proof)"):
            disk.cut_power().require()
        with timings.measure("remount after cut"):
            disk.remount()
        data = durable.read_bytes()
        return data[:4096] == b"A" * 4096, data == b"A" * 4096, not (disk / "never-synced").exists()


def _bench_command(repeat: int) -> int:
    timings = _Timings()
    outcomes = []
    for _ in range(repeat):
        with ExitStack() as cleanup:  # unmounts even when a step fails; close() is idempotent
            with timings.measure("LoopExt4(8 MB) enter: truncate+mkfs+mount"):
                disk = cleanup.enter_context(LoopExt4(8))
            with timings.measure("fill ext4 8 MB to ENOSPC (proven)"):
                ballast = fill(disk)
            with timings.measure("free_space ext4 (proven)"):
                free_space(ballast).require()
            with timings.measure("LoopExt4 exit: umount+cleanup"):
                disk.close()
            outcomes.append(_power_cut_trial(timings))
            with timings.measure("SmallTmpfs(1 MiB) enter"):
                tmpfs = cleanup.enter_context(SmallTmpfs(1 << 20))
            with timings.measure("fill tmpfs 1 MiB (proven)"):
                free_space(fill(tmpfs)).require()
            with timings.measure("SmallTmpfs exit"):
                tmpfs.close()
            with timings.measure("ChildProcess.python(noop) start->outcome"), ChildProcess.python(_noop) as child:
                child.outcome(30)
            sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
            with ChildProcess.command(sleeper) as child, timings.measure("kill9 (signal + reap + proof)"):
                kill9(child).require()
            with (
                StraceFault("fsync", path="/nonexistent") as fault,
                timings.measure("ChildProcess.python(noop) under strace"),
                ChildProcess.python(_noop, wrapper=fault.wrapper) as child,
            ):
                child.outcome(30)
    timings.print()
    _bench_shim_overhead()
    survived = sum(o[0] for o in outcomes)
    lost_append = sum(o[1] for o in outcomes)
    lost_file = sum(o[2] for o in outcomes)
    print(
        f"\npower cut x{repeat}: fsynced data intact {survived}/{repeat}, unsynced append gone "
        f"{lost_append}/{repeat}, never-fsynced file gone {lost_file}/{repeat}"
    )
    return 0


def _bench_shim_overhead() -> None:
    target = Path(os.environ.get("TMPDIR", "/tmp")) / f"testkit-bench-{os.getpid()}"
    try:
        with ChildProcess.python(_write_loop, (str(target), _WRITES_PER_CHILD)) as child:
            plain = _value(child.outcome(60))
        args = (str(target), _WRITES_PER_CHILD)
        with (
            IoFault("no-such-file", op="write") as fault,
            ChildProcess.python(_write_loop, args, env=fault.child_env()) as child,
        ):
            shimmed = _value(child.outcome(60))
        with (
            IoFault(target.name, op="fsync") as fault,
            ChildProcess.python(_write_loop, args, env=fault.child_env()) as child,
        ):
            other_op = _value(child.outcome(60))
    finally:
        target.unlink(missing_ok=True)
    print(
        f"\nos.write of 1 byte in a child: {plain:.0f} ns plain, {shimmed:.0f} ns with the shim "
        f"(write selected, path not matching: one readlink per call), {other_op:.0f} ns with only fsync selected"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testkit.faults", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("probe", help="which fault mechanisms work on this machine")
    bench = commands.add_parser("bench", help="time each injector (needs root, loop devices, gcc, strace)")
    bench.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args(argv)
    if args.command == "probe":
        return _probe_command()
    return _bench_command(args.repeat)
