"""Server memory under greedy readers and stuck subscribers, measured from outside (psutil on the PID).

Not in ``make test``: each case moves tens of megabytes and waits out the server's deadlines.
``benchmarks/hostile_clients.py`` prints the same figures at full scale, before and after.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from lighthouse import Event, EventStore
from suites.integration.support import RunningServer, poll_until, start_server
from suites.security.hostile import StuckReaders, peak_rss_while

pytestmark = pytest.mark.slow

MIB = 1 << 20
EVENTS = 48
EVENT_CHARS = 1_000_000


async def fill(directory: Path) -> None:
    blob = "m" * EVENT_CHARS
    async with EventStore(directory) as store:
        for i in range(EVENTS):
            await store.append(Event("custom", aggregate_id=f"mem:{i % 5}", data={"i": i, "blob": blob}))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    workdir = tmp_path_factory.mktemp("memory")
    asyncio.run(fill(workdir / "data"))
    running = start_server(workdir, config={
        "server": {"max_page_bytes": 4 * MIB, "max_stream_subscribers": 64, "stream_send_timeout_seconds": 2},
        "limits": {"websocket_stuck_seconds": 4, "websocket_close_timeout_seconds": 2},
    })
    try:
        yield running
    finally:
        assert running.stop(timeout=60) == 0, running.log()


def test_four_maximal_reads_stay_within_the_configured_page_bytes(server: RunningServer) -> None:
    headers = server.headers("greedy-reader")
    sizes: list[int] = []

    def read() -> None:
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=120) as client:
            with client.stream("GET", "/events", params={"limit": 10000}) as response:
                assert response.status_code == 200
                sizes.append(sum(len(chunk) for chunk in response.iter_bytes()))

    def four() -> None:
        threads = [threading.Thread(target=read) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    before, peak, _ = peak_rss_while(server.pid, four)
    assert len(sizes) == 4 and all(size <= 4 * MIB + 1.1 * EVENT_CHARS for size in sizes), sizes
    # Unbounded, 4 x 48 MB pages would need ~400 MB (encoded and decoded copies); bounded, a few chunks each.
    assert peak - before < 160 * MIB, f"peak RSS grew by {(peak - before) / MIB:.0f} MiB"


def test_stuck_subscribers_are_dropped_and_memory_returns(server: RunningServer) -> None:
    process = psutil.Process(server.pid)
    baseline = process.memory_info().rss
    with StuckReaders(server.host, server.port, server.token("stuck"), 40) as readers:
        assert len(readers.socks) == 40, "the fault happened: 40 subscribers that never read"
        poll_until(lambda: readers.closed_by_server() == 40, timeout=60, interval=1.0,
                   what="the server to drop every stuck subscriber")
    detailed = server.client("root", "admin").get("/health/detailed").json()
    assert detailed["server"]["streams"] == 0
    rss: list[int] = []
    poll_until(lambda: rss.append(process.memory_info().rss) or rss[-1] - baseline < 64 * MIB, timeout=30,
               interval=1.0, what=f"server memory back near its baseline {baseline / MIB:.0f} MiB (now {rss})")
