"""The PostgreSQL server reaches its cluster even when a directory above it closes to other accounts.

As root the server runs as the ``pgserver`` account, and pytest resets ``/tmp/pytest-of-root`` to 0700
whenever any session starts; a server restarted below it then PANICked on ``global/pg_control``
("Permission denied") and the SIGKILL campaign lost cycles to stores that could not open.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.adapters.shipped import SHIPPED

pytestmark = pytest.mark.ci


@pytest.fixture
def private_parent() -> Iterator[Path]:
    """A root-owned directory that we close to every other account once the store is in it."""
    path = Path(tempfile.mkdtemp(prefix="testkit-pg-private-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_a_restart_below_a_directory_closed_to_the_server_account_recovers(private_parent: Path) -> None:
    missing = SHIPPED["postgres"].missing()
    if missing:
        pytest.skip(missing)
    if os.geteuid() != 0:
        pytest.skip("only root runs the server as another account (pgserver)")
    from testkit.adapters.postgres import postgres_default

    data_dir = private_parent / "store"
    events = [{"event_id": f"e{i}", "event_type": "custom", "aggregate_id": "a"} for i in range(3)]

    async def write_then_read_after_restart() -> list[str]:
        adapter = postgres_default(data_dir)
        await adapter.open()
        try:
            await adapter.append_batch(events[:1])
            private_parent.chmod(0o700)  # what pytest does to pytest-of-root at every session start
            adapter._db().execute("CHECKPOINT")  # rewrites pg_control by its absolute path (PANICked before)
            await adapter.append_batch(events[1:])
        finally:
            await adapter.close()
        assert private_parent.stat().st_mode & 0o077 == 0  # the fault held: no other account may pass
        reopened = postgres_default(data_dir)
        await reopened.open()
        try:
            return [event.event_id async for event in reopened.read_all()]
        finally:
            await reopened.close()

    assert asyncio.run(write_then_read_after_restart()) == [e["event_id"] for e in events]
