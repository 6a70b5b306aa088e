"""Slowloris at the issue's scale: more slow sockets than the server has descriptors (not in ``make test``).

``benchmarks/hostile_clients.py`` prints the same figures, before and after, with latency percentiles.
"""

from __future__ import annotations

import resource
import shutil
from pathlib import Path

import pytest

from suites.integration.support import poll_until, start_server
from suites.security.hostile import SlowSockets, good_clients

pytestmark = pytest.mark.slow


@pytest.mark.skipif(shutil.which("prlimit") is None, reason="prlimit (util-linux) is not installed")
def test_1100_reconnecting_slow_heads_under_a_1024_descriptor_limit(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 4096:
        pytest.skip(f"this process may open at most {hard} descriptors; the attack needs more")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # raising the soft limit only
    server = start_server(tmp_path, wrapper=["prlimit", "--nofile=1024:1024"])
    try:
        with SlowSockets(server.host, server.port, count=1100, interval=2.0, reconnect=True) as slow:
            poll_until(lambda: slow.opened >= 1100, timeout=60, what="1,100 slow sockets open")
            figures = good_clients(server.base_url, server.headers("good"), requests=20, timeout=20)
            poll_until(lambda: len(slow.lifetimes) >= 1100, timeout=60, interval=1.0,
                       what="the server to close the first 1,100 slow sockets")
            assert slow.open_now >= 900, "the attack kept going: dropped sockets were replaced"
        assert figures.successes == figures.attempts, figures
        assert max(slow.lifetimes) < 30, f"a slow head lived {max(slow.lifetimes):.1f} s"
        assert server.log_path.stat().st_size < 100_000, "no traceback per failed accept()"
        assert "Traceback" not in server.log()
    finally:
        assert server.stop(timeout=60) == 0
