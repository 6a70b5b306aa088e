"""The Locust master warns when a run ramps its agents up (``-r`` below ``-u``).

Run in a child interpreter: importing the locustfile imports Locust, which monkey-patches the process
with gevent."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.ci, pytest.mark.skipif(importlib.util.find_spec("locust") is None,
                                                 reason="locust is not installed (pip install '.[locust]')")]

_CHILD = """
import logging, sys, types
logging.basicConfig(stream=sys.stdout, level=logging.WARNING, format="%(name)s: %(message)s")
from testkit.load.locust.locustfile import _warn_of_a_ramp
_warn_of_a_ramp(types.SimpleNamespace(num_users=int(sys.argv[1]), spawn_rate=float(sys.argv[2])))
print("done")
"""


def _warnings(users: int, rate: float) -> str:
    child = subprocess.run([sys.executable, "-c", _CHILD, str(users), str(rate)],
                           capture_output=True, text=True, timeout=120, check=False)
    assert child.returncode == 0 and child.stdout.rstrip().endswith("done"), child.stderr
    return child.stdout


def test_a_ramp_is_warned_of_with_the_option_that_avoids_it() -> None:
    out = _warnings(100, 10)
    assert "testkit.locust: -r 10.0 < -u 100" in out, out
    assert "(-r 100)" in out, out


def test_starting_every_agent_at_once_draws_no_warning() -> None:
    assert "spawn step" not in _warnings(100, 100)
