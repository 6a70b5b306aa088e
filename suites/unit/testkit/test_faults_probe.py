"""Probes answer with typed, cached results that suites can turn into skips with a reason."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from testkit.faults import Available, Unavailable, no_leaks
from testkit.faults.probe import all_probes, probe_loop_mount, probe_tmpfs


@pytest.fixture(autouse=True)
def _no_leftovers() -> Iterator[None]:
    with no_leaks():
        yield


def test_every_probe_answers_with_a_typed_result() -> None:
    results = all_probes()
    assert set(results) == {"root", "tmpfs", "loop_mount", "shutdown_ioctl", "gcc", "strace", "pyfakefs"}
    for name, result in results.items():
        assert isinstance(result, Available | Unavailable), name
        if isinstance(result, Unavailable):
            assert result.reason, f"{name} is unavailable without a reason"


def test_probes_are_cached_per_process() -> None:
    assert probe_tmpfs() is probe_tmpfs()
    assert probe_loop_mount() is probe_loop_mount()


def test_results_are_truthy_only_when_available() -> None:
    assert Available("x")
    assert not Unavailable("no root")
    assert Unavailable("no root").reason == "no root"


def test_a_probe_that_is_available_means_the_mechanism_works() -> None:
    available = probe_tmpfs()
    if isinstance(available, Unavailable):
        pytest.skip(available.reason)
    from testkit.faults import SmallTmpfs

    with SmallTmpfs(8 * 4096) as fs:
        (fs / "ok").write_bytes(b"1")
        assert (fs / "ok").read_bytes() == b"1"


def test_the_probe_command_prints_one_line_per_mechanism() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "testkit.faults", "probe"], capture_output=True, text=True, timeout=60, check=True
    )
    names = [line.split()[0] for line in done.stdout.splitlines()]
    assert names == list(all_probes())
