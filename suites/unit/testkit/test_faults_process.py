"""Process faults: SIGKILL proven by wait status, SIGSTOP proven by /proc state, children always reaped."""

from __future__ import annotations

import errno
import os
import random
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from testkit.faults import (
    ChildProcess,
    InvalidFaultSpec,
    kill9,
    kill_at_random,
    no_leaks,
    pause,
    process_state,
)

DEADLINE_S = 10.0
SLEEPER = [sys.executable, "-c", "import time\nwhile True: time.sleep(1)"]


@pytest.fixture(autouse=True)
def _no_leftovers() -> Iterator[None]:
    with no_leaks():
        yield


def add(a: int, b: int) -> int:
    return a + b


def fail_with_enospc() -> None:
    raise OSError(errno.ENOSPC, "disk full on purpose")


def spawn_grandchild_and_wait(pid_file: str) -> None:
    import subprocess

    grandchild = subprocess.Popen([sys.executable, "-c", "import time\nwhile True: time.sleep(1)"])
    Path(pid_file).write_text(str(grandchild.pid))
    grandchild.wait()


def heartbeat(path: str) -> None:
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    beat = 0
    while True:
        beat += 1
        os.pwrite(fd, f"{beat:020d}".encode(), 0)
        time.sleep(0.001)


def poll_until(condition, what: str, deadline_s: float = DEADLINE_S):  # type: ignore[no-untyped-def]
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.002)
    raise AssertionError(f"timed out waiting for {what}")


def test_python_child_returns_its_value() -> None:
    with ChildProcess.python(add, (2, 3)) as child:
        outcome = child.outcome(DEADLINE_S)
    assert outcome.returncode == 0
    assert outcome.value == 5
    assert outcome.error is None


def test_python_child_reports_its_exception_by_value() -> None:
    with ChildProcess.python(fail_with_enospc) as child:
        outcome = child.outcome(DEADLINE_S)
    assert outcome.returncode == 1
    assert outcome.error is not None
    assert (outcome.error.type_name, outcome.error.errno) == ("OSError", errno.ENOSPC)
    assert "disk full on purpose" in outcome.error.traceback


def test_callable_that_cannot_be_pickled_is_refused() -> None:
    with pytest.raises(InvalidFaultSpec, match="module-level"):
        ChildProcess.python(lambda: None)


def test_a_callable_from_main_is_refused_with_the_reason() -> None:
    def from_main() -> None:
        return None

    from_main.__module__ = "__main__"
    with pytest.raises(InvalidFaultSpec, match="__main__"):
        ChildProcess.python(from_main)


def test_command_output_is_captured() -> None:
    with ChildProcess.command(
        [sys.executable, "-c", "print('hello'); import sys; print('oops', file=sys.stderr)"]
    ) as child:
        assert child.wait(DEADLINE_S) == 0
        assert child.stdout_text() == "hello\n"
        assert child.stderr_text() == "oops\n"


def test_kill9_is_proven_by_the_wait_status() -> None:
    with ChildProcess.command(SLEEPER) as child:
        record = kill9(child)
    assert record.proven, record.detail
    assert record.kind == "sigkill"
    assert record.evidence["returncode"] == -signal.SIGKILL
    assert child.returncode == -signal.SIGKILL
    assert record.t_start <= record.t_end


def test_kill9_takes_the_whole_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    with ChildProcess.python(spawn_grandchild_and_wait, (str(pid_file),)) as child:
        grandchild_pid = int(poll_until(lambda: pid_file.exists() and pid_file.read_text(), "grandchild pid"))
        grandchild = psutil.Process(grandchild_pid)
        assert kill9(child).proven
    poll_until(lambda: not grandchild.is_running() or grandchild.status() == psutil.STATUS_ZOMBIE, "grandchild to die")


def test_kill9_of_a_child_that_already_exited_is_not_proven() -> None:
    with ChildProcess.command([sys.executable, "-c", "pass"]) as child:
        poll_until(lambda: process_state(child.pid) == "Z", "child to become a zombie")
        record = kill9(child)
    assert not record.proven
    assert record.evidence["returncode"] == 0
    assert "before SIGKILL" in record.detail


def test_kill9_accepts_a_plain_popen() -> None:
    import subprocess

    popen = subprocess.Popen(SLEEPER)
    try:
        record = kill9(popen)
    finally:
        popen.kill()
        popen.wait()
    assert record.proven


def test_pause_is_proven_by_stopped_state_and_resumes(tmp_path: Path) -> None:
    beat_file = tmp_path / "beat"
    with ChildProcess.python(heartbeat, (str(beat_file),)) as child:
        poll_until(lambda: beat_file.exists() and beat_file.read_bytes(), "first heartbeat")
        with pause(child) as record:
            assert record.proven, record.detail
            assert process_state(child.pid) == "T"
            frozen_at = beat_file.read_bytes()
        assert process_state(child.pid) != "T"
        poll_until(lambda: beat_file.read_bytes() != frozen_at, "heartbeat after SIGCONT")
        assert kill9(child).proven


def test_kill_at_random_uses_the_seeded_delay() -> None:
    window = (0.01, 0.05)
    expected_delay = random.Random(7).uniform(*window)
    with ChildProcess.command(SLEEPER) as child:
        record = kill_at_random(child, random.Random(7), window)
    assert record.proven, record.detail
    assert record.evidence["delay_s"] == expected_delay
    assert record.duration_s >= expected_delay


def test_kill_at_random_reports_a_child_that_exited_first() -> None:
    with ChildProcess.command([sys.executable, "-c", "pass"]) as child:
        record = kill_at_random(child, random.Random(1), (30.0, 30.0))
    assert not record.proven
    assert record.evidence["returncode"] == 0
    assert record.duration_s < 30.0


def test_kill_at_random_rejects_a_bad_window() -> None:
    with ChildProcess.command(SLEEPER) as child, pytest.raises(InvalidFaultSpec):
        kill_at_random(child, random.Random(1), (0.5, 0.1))


def test_leaving_the_block_kills_a_running_child() -> None:
    with ChildProcess.command(SLEEPER) as child:
        pid = child.pid
    assert child.returncode == -signal.SIGKILL
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
