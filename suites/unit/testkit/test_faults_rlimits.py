"""Resource limits bite in the child (EMFILE, MemoryError, EFBIG) and never touch the runner."""

from __future__ import annotations

import errno
import os
import resource
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testkit.faults import (
    ChildProcess,
    FaultError,
    InvalidFaultSpec,
    Limits,
    no_leaks,
    pressure,
    run_limited,
    start_limited,
)

MiB = 1024 * 1024
DEADLINE_S = 30.0


@pytest.fixture(autouse=True)
def _no_leftovers() -> Iterator[None]:
    with no_leaks():
        yield


@pytest.fixture(autouse=True)
def _runner_limits_untouched() -> Iterator[None]:
    names = ("RLIMIT_NOFILE", "RLIMIT_AS", "RLIMIT_FSIZE")
    before = {n: resource.getrlimit(getattr(resource, n)) for n in names}
    yield
    assert {n: resource.getrlimit(getattr(resource, n)) for n in names} == before


def open_until_failure() -> int:
    held = []
    try:
        while True:
            held.append(os.open(os.devnull, os.O_RDONLY))
    finally:
        for fd in held:
            os.close(fd)


def allocate(size: int) -> int:
    return len(bytearray(size))


def write_file(path: str, size: int) -> int:
    with open(path, "wb") as fh:
        return fh.write(bytes(size))


def exhaust_then_recover(directory: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    with pressure(Limits(nofile=16), scratch_dir=directory) as records:
        seen["proven"] = all(r.proven for r in records)
        try:
            open_until_failure()
        except OSError as exc:
            seen["under_pressure"] = exc.errno
    fds = [os.open(os.devnull, os.O_RDONLY) for _ in range(64)]
    for fd in fds:
        os.close(fd)
    seen["after"] = len(fds)
    return seen


def test_nofile_gives_emfile_in_the_child() -> None:
    run = run_limited(open_until_failure, Limits(nofile=32))
    assert run.proven, [r.detail for r in run.records]
    [record] = run.records
    assert record.kind == "rlimit_nofile"
    assert record.evidence["applied"] == (32, 32)
    assert run.outcome.error is not None and run.outcome.error.errno == errno.EMFILE


def test_address_space_gives_memoryerror_in_the_child() -> None:
    run = run_limited(allocate, Limits(address_space=400 * MiB), args=(600 * MiB,))
    assert run.proven, [r.detail for r in run.records]
    assert run.outcome.error is not None and run.outcome.error.type_name == "MemoryError"


def test_file_size_gives_efbig_in_the_child(tmp_path: Path) -> None:
    target = tmp_path / "big"
    run = run_limited(write_file, Limits(file_size=1 * MiB), args=(str(target), 2 * MiB))
    assert run.proven, [r.detail for r in run.records]
    assert run.outcome.error is not None and run.outcome.error.errno == errno.EFBIG
    assert target.stat().st_size == 1 * MiB  # the short write landed, the rest was refused


def test_several_limits_each_get_a_record() -> None:
    run = run_limited(os.getpid, Limits(nofile=64, address_space=1024 * MiB, file_size=4 * MiB))
    assert run.outcome.returncode == 0 and run.outcome.error is None
    assert sorted(r.kind for r in run.records) == ["rlimit_as", "rlimit_fsize", "rlimit_nofile"]
    assert run.proven


def test_a_limited_command_is_proven_and_sees_the_limit() -> None:
    script = "import resource; print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])"
    with start_limited([sys.executable, "-c", script], Limits(nofile=40)) as child:
        outcome = child.outcome(DEADLINE_S)
        assert outcome.returncode == 0, child.stderr_text()
        assert child.stdout_text().strip() == "40"
    assert outcome.limits["RLIMIT_NOFILE"]["proven"] is True


def test_pressure_in_a_child_is_lifted_afterwards(tmp_path: Path) -> None:
    with ChildProcess.python(exhaust_then_recover, (str(tmp_path),)) as child:
        outcome = child.outcome(DEADLINE_S)
    assert outcome.error is None, outcome.error
    assert outcome.value == {"proven": True, "under_pressure": errno.EMFILE, "after": 64}


def test_pressure_refuses_to_run_in_the_runner() -> None:
    with (
        pytest.raises(FaultError, match="only inside a testkit child"),
        pressure(Limits(nofile=16), scratch_dir=tempfile.gettempdir()),
    ):
        pass  # pragma: no cover - never entered


@pytest.mark.parametrize(
    "limits",
    [Limits(), Limits(nofile=0), Limits(nofile=resource.getrlimit(resource.RLIMIT_NOFILE)[1] + 1)],
    ids=["nothing", "zero", "above-hard"],
)
def test_impossible_limits_are_rejected(limits: Limits) -> None:
    with pytest.raises(InvalidFaultSpec):
        run_limited(os.getpid, limits)
