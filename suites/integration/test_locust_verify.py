"""A distributed run's check by id, against a real server: the store is read a page at a time while the
check runs, and a write the journals saw acknowledged but the store lacks is reported lost."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest

from lighthouse.server.auth import Role
from testkit.adapters import HttpEventStoreAdapter
from testkit.checkers import History, OpKind
from testkit.load.locust import verify

from .support import RunningServer, start_server


@pytest.fixture
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server of this test's own: the check reads the whole store, and another test's events would be
    phantoms here."""
    running = start_server(tmp_path_factory.mktemp("server"))
    try:
        yield running
    finally:
        assert running.stop() == 0, running.log()


def _write(server: RunningServer, journal: Path, count: int) -> None:
    """``count`` events in batches of 10, journaled as a Locust worker journals them."""
    prefix = uuid.uuid4().hex
    adapter = HttpEventStoreAdapter(server.base_url, token=server.token("verify-agent"))

    async def write() -> None:
        await adapter.open()
        try:
            with History(journal) as history:
                for start in range(0, count, 10):
                    batch = [{"event_id": f"{prefix}-{n}", "event_type": "custom", "aggregate_id": f"v:{n % 7}",
                              "data": {"n": n}} for n in range(start, start + 10)]
                    await history.append_batch(adapter, batch)
        finally:
            await adapter.close()

    asyncio.run(write())


def test_every_acknowledged_write_is_found_reading_the_store_a_page_at_a_time(
        server: RunningServer, tmp_path: Path) -> None:
    _write(server, tmp_path / "history-w0.journal", 250)
    taken: list[int] = []
    real_take = verify._take

    async def counting_take(events, count):  # type: ignore[no-untyped-def]
        page = await real_take(events, count)
        taken.append(len(page))
        return page

    with mock.patch.object(verify, "_PAGE", 40), mock.patch.object(verify, "_take", counting_take):
        verdict = asyncio.run(verify.verify_run(tmp_path, server.base_url, server.token("checker", Role.ADMIN)))
    assert verdict.ok, verdict.summary()
    assert verdict.counts["acknowledged"] == verdict.counts["acknowledged_present"] == verdict.counts["recovered"] == 250
    assert taken == [40] * 6 + [10, 0]


def test_an_acknowledged_write_the_store_lacks_is_lost(server: RunningServer, tmp_path: Path) -> None:
    _write(server, tmp_path / "history-w0.journal", 20)
    with History(tmp_path / "history-w1.journal", client_id="w1") as history:
        op = history.invoke(OpKind.APPEND, [{"event_id": "never-stored"}], digests=[None])
        history.ok(op, [10**9])
    verdict = asyncio.run(verify.verify_run(tmp_path, server.base_url, server.token("checker", Role.ADMIN)))
    assert not verdict.ok
    assert any(v.event_ids == ("never-stored",) for v in verdict.violations), verdict.summary()
