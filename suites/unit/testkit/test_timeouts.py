"""``--testkit-duration`` scales pytest-timeout's limits: a long run is not killed at the short run's limit."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

pytest.importorskip("pytest_timeout", reason="pytest-timeout is not installed")

# A test that takes 3 s under a 2 s limit: killed at scale 1, passes once the limit is scaled 4x (8 s).
_SLOW_TEST = """
import time

def test_sleeps_three_seconds():
    time.sleep(3)
"""


@pytest.fixture
def slow_project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(_SLOW_TEST)
    pytester.makeini("[pytest]\ntimeout = 2\ntimeout_method = thread\n")
    return pytester


def test_the_ini_timeout_kills_a_test_without_a_duration(slow_project: pytest.Pytester) -> None:
    """The control: the limit is real, so the next test's pass is the scaling's doing."""
    result = slow_project.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*Timeout*"])


def test_a_duration_factor_scales_the_ini_timeout(slow_project: pytest.Pytester) -> None:
    # 240 s is 4x the 60 s that scale 1.0 stands for: the 2 s limit becomes 8 s.
    result = slow_project.runpytest_subprocess("-p", "no:cacheprovider", "--testkit-duration=240s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*timeouts scaled 4x*session limit 8 s*"])


def test_a_duration_factor_scales_a_timeout_marker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import time, pytest

        @pytest.mark.timeout(2)
        def test_marked():
            time.sleep(3)
        """)
    killed = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-o", "timeout_method=thread")
    assert killed.ret != 0
    scaled = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-o", "timeout_method=thread",
                                           "--testkit-duration", "4m")
    scaled.assert_outcomes(passed=1)
