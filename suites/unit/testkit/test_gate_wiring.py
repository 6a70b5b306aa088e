"""The regression gate as the plugin runs it: stable keys whatever the rootdir, both option forms alike, a
directory of baselines picked by machine fingerprint, and a gate that matches nothing is an error, not a pass."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from testkit.environment import machine_fingerprint

pytest_plugins = ["pytester"]

_MEASURED = """
import os

def test_measured(testkit_record):
    slow = float(os.environ.get("SLOWDOWN", "1.0"))
    samples = [100.0 * slow + (i % 7) for i in range(200)]
    testkit_record.metric("op_us", sorted(samples)[100], "us", samples=samples)
"""


@pytest.fixture
def project(pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory) -> tuple[pytest.Pytester, Path]:
    """A project with one measured test and a baseline saved *outside* it (a sibling directory)."""
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_measured=_MEASURED)
    elsewhere = tmp_path_factory.mktemp("baselines")
    saved = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--testkit-save-baseline={elsewhere / 'b.json'}")
    saved.assert_outcomes(passed=1)
    return pytester, elsewhere / "b.json"


def _run(pytester: pytest.Pytester, *args: str, slowdown: float = 1.0) -> pytest.RunResult:
    os.environ["SLOWDOWN"] = str(slowdown)
    try:
        return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)
    finally:
        del os.environ["SLOWDOWN"]


def test_both_option_forms_compare_the_same_metrics_and_catch_a_slowdown(
        project: tuple[pytest.Pytester, Path]) -> None:
    pytester, baseline = project
    same = _run(pytester, "--testkit-baseline", str(baseline))
    assert same.ret == 0, same.stdout.str()
    # The case that used to compare nothing: pytest took the value for a path and moved its rootdir.
    assert f"rootdir: {pytester.path}\n" not in same.stdout.str(), "the rootdir did not move: no test here"
    same.stdout.fnmatch_lines(["*test_measured::op_us*ok*", "*1 metric(s):*ok*"])
    for args in (["--testkit-baseline", str(baseline)], [f"--testkit-baseline={baseline}"]):
        slower = _run(pytester, *args, slowdown=1.3)
        assert slower.ret == 1, slower.stdout.str()
        slower.stdout.fnmatch_lines(["*test_measured.py::test_measured::op_us*REGRESSION*", "*BLOCKING regression*"])


def test_a_gate_matching_nothing_is_an_error_and_a_directory_is_searched_by_fingerprint(
        project: tuple[pytest.Pytester, Path]) -> None:
    pytester, baseline = project
    pytester.makepyfile(test_other="def test_other(testkit_record):\n    testkit_record.metric('x', 1.0)\n")
    nothing = _run(pytester, "test_other.py", f"--testkit-baseline={baseline}")
    assert nothing.ret == 2, nothing.stdout.str()
    nothing.stdout.fnmatch_lines(["*ERROR: the regression gate matched no metric*"])

    folder = baseline.parent
    key = machine_fingerprint(pytester.path).key
    missing = _run(pytester, "test_measured.py", f"--testkit-baseline={folder}")
    assert missing.ret == 0, missing.stdout.str()
    missing.stdout.fnmatch_lines([f"*no baseline for this machine (fingerprint {key})*make baseline*"])
    baseline.rename(folder / f"{key}.json")
    slower = _run(pytester, "test_measured.py", f"--testkit-baseline={folder}", slowdown=1.3)
    assert slower.ret == 1, slower.stdout.str()
    slower.stdout.fnmatch_lines([f"*comparing with*{key}.json*", "*BLOCKING regression*"])
