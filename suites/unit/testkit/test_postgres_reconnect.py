"""The PostgreSQL adapter behaves as a client with a service manager when its server crashes under it.

A backend killed by a signal makes the postmaster restart every session (crash recovery); a SIGKILLed
postmaster is gone for good. Either way the adapter must refuse the calls it cannot serve with a typed,
retryable error, reconnect (restarting a dead postmaster, as systemd's ``Restart=on-failure`` would), and
lose nothing it acknowledged.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from testkit.adapters.base import AdapterError
from testkit.adapters.shipped import SHIPPED

pytestmark = pytest.mark.ci


def _event(number: int) -> dict[str, str]:
    return {"event_id": f"e{number}", "event_type": "custom", "aggregate_id": "a"}


def _alive(pid: int) -> bool:
    """``pid`` runs (a killed postmaster stays a zombie until the adapter reaps it)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # gone, or going while /proc is read (ESRCH: seen under CPU hogs)
        return False


async def _append_until_acknowledged(adapter, number: int, deadline_s: float = 60.0) -> list[str]:
    """Retry one event (same id) until acknowledged; the codes of the typed refusals met on the way."""
    refusals: list[str] = []
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            await adapter.append(_event(number))
            return refusals
        except AdapterError as exc:
            assert exc.retryable, f"not retryable: {exc.code}: {exc}"
            refusals.append(exc.code)
            assert time.monotonic() < deadline, f"no recovery within {deadline_s}s: {refusals[-3:]}"
            await asyncio.sleep(0.05)  # a client's back-off between retries


@pytest.mark.parametrize("victim", ["backend", "postmaster"])
def test_a_crashed_server_costs_typed_retryable_refusals_then_the_adapter_reconnects(tmp_path: Path,
                                                                                    victim: str) -> None:
    missing = SHIPPED["postgres"].missing()
    if missing:
        pytest.skip(missing)
    from testkit.adapters.postgres import postgres_default

    async def scenario() -> tuple[list[str], list[str]]:
        adapter = postgres_default(tmp_path / "store")
        await adapter.open()
        try:
            for number in range(3):
                await adapter.append(_event(number))
            cluster = adapter.data_dir / "pgdata"
            postmaster = int((cluster / "postmaster.pid").read_text().split()[0])
            target = adapter._db().info.backend_pid if victim == "backend" else postmaster
            os.kill(target, signal.SIGKILL)
            deadline = time.monotonic() + 15
            while _alive(target) and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            assert not _alive(target)  # the fault happened
            refusals = await _append_until_acknowledged(adapter, 3)
            restarted = int((cluster / "postmaster.pid").read_text().split()[0])
            assert (restarted != postmaster) == (victim == "postmaster")  # only a dead postmaster is restarted
            return refusals, [event.event_id async for event in adapter.read_all()]
        finally:
            await adapter.close()

    refusals, stored = asyncio.run(scenario())
    assert refusals, "the broken session's first call must be refused, not silently retried"
    assert stored == ["e0", "e1", "e2", "e3"]
