"""The PostgreSQL adapter's server dies with the process that opened it, so a SIGKILL campaign kills the database.

A child opens the adapter, acknowledges writes, reports its server's PID and is SIGKILLed; the server
must be gone (no postgres process left working in that data directory) and the next open must
recover every acknowledged write.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.adapters.shipped import SHIPPED

pytestmark = pytest.mark.ci

_CHILD = """
import asyncio, json, sys
from testkit.adapters.postgres import postgres_default

async def main():
    adapter = postgres_default(sys.argv[1])
    await adapter.open()
    stored = await adapter.append_batch([{"event_id": f"e{i}", "event_type": "custom", "aggregate_id": "a"}
                                         for i in range(5)])
    postmaster = int((adapter.data_dir / "pgdata" / "postmaster.pid").read_text().split()[0])
    print(json.dumps({"postmaster": postmaster, "acked": [e.event_id for e in stored]}), flush=True)
    await asyncio.Event().wait()  # hold the store open until killed

asyncio.run(main())
"""


def _postgres_in(cluster: Path) -> list[int]:
    """PIDs of live postgres processes working in ``cluster``."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                state = fh.read().rsplit(")", 1)[1].split()[0]
            if state != "Z" and os.readlink(f"/proc/{entry}/cwd") == str(cluster.resolve()):
                found.append(int(entry))
        except OSError:
            continue
    return found


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """Not under pytest's basetemp: every pytest session start resets ``pytest-of-<user>`` to 0700, which
    would lock the server's own account (PostgreSQL refuses to run as root) out of a concurrent run's dir."""
    path = Path(tempfile.mkdtemp(prefix="testkit-pg-lifetime-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_sigkill_of_the_owner_takes_the_server_down_and_the_next_open_recovers(data_dir: Path) -> None:
    missing = SHIPPED["postgres"].missing()
    if missing:
        pytest.skip(missing)
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(data_dir)], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert child.stdout is not None
        report = json.loads(child.stdout.readline())
        cluster = data_dir / "pgdata"
        assert report["postmaster"] in _postgres_in(cluster)  # the fault's target was really running
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL  # the fault happened
        deadline = time.monotonic() + 15
        while (left := _postgres_in(cluster)) and time.monotonic() < deadline:
            time.sleep(0.05)  # backends notice their postmaster's death by themselves
        assert not left, f"postgres processes {left} outlived the SIGKILLed owner"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()

    from testkit.adapters.postgres import postgres_default

    async def recovered() -> list[str]:
        adapter = postgres_default(data_dir)
        await adapter.open()
        try:
            return [event.event_id async for event in adapter.read_all()]
        finally:
            await adapter.close()

    assert asyncio.run(recovered()) == report["acked"]
    assert not _postgres_in(data_dir / "pgdata")  # close() stops the server it started
