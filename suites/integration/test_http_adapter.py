"""testkit's HTTP adapter drives the real server like the in-process adapter drives the store."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from lighthouse.models import Event
from lighthouse.store import EventStore
from testkit.adapters import AdapterError, EventStoreAdapter, HttpEventStoreAdapter
from testkit.adapters.base import StoredEvent
from testkit.checkers import History, check_durability

from .support import RunningServer, start_server


def test_the_http_adapter_satisfies_the_protocol_and_keeps_every_acknowledged_write(server: RunningServer) -> None:
    adapter = HttpEventStoreAdapter(server.base_url, token=server.token("adapter-agent"))
    assert isinstance(adapter, EventStoreAdapter)
    history = History()

    async def scenario() -> None:
        await adapter.open()
        try:
            for i in range(30):
                event = {"event_id": f"http-{i}", "event_type": "custom", "aggregate_id": f"http:{i % 3}",
                         "data": {"i": i}, "timestamp": 1_700_000_000.0 + i}
                await history.append(adapter, event)
            batch = [{"event_id": f"http-b{i}", "event_type": "custom", "aggregate_id": "http:b", "data": {"i": i}}
                     for i in range(20)]
            await history.append_batch(adapter, batch)
            first = {"event_id": "http-0", "event_type": "custom", "aggregate_id": "http:0", "data": {"i": 0},
                     "timestamp": 1_700_000_000.0}
            again = await adapter.append(first)  # a retry of the same write: the stored copy, not a second event
            assert again.event_id == "http-0" and again.sequence == 1
            with pytest.raises(AdapterError) as conflict:
                await adapter.append(dict(first, data={"i": "changed"}))
            assert conflict.value.code == "duplicate_event"
            with pytest.raises(AdapterError) as refused:
                await adapter.append({"event_id": "bad", "event_type": "no_such_type", "aggregate_id": "x"})
            assert refused.value.code == "invalid_event" and not refused.value.retryable
            found = await adapter.query(aggregate_ids=["http:b"], limit=100)
            assert [e.event_id for e in found] == [f"http-b{i}" for i in range(20)]
            recovered = [e async for e in adapter.read_all() if e.event_id.startswith("http-")]
        finally:
            await adapter.close()
        verdict = check_durability(history, recovered, gapless=False)
        assert verdict.ok, verdict.summary()
        assert all(e.source_agent == "adapter-agent" for e in recovered)

    asyncio.run(scenario())


def test_a_refused_read_is_a_typed_error_with_the_servers_reason(server: RunningServer) -> None:
    """Reads ask for MessagePack, so the server answers a refusal in MessagePack too: its code still reaches
    the caller (not a generic "http_401")."""
    adapter = HttpEventStoreAdapter(server.base_url, token="not-a-token")

    async def read() -> None:
        await adapter.open()
        try:
            [e async for e in adapter.read_all()]
        finally:
            await adapter.close()

    with pytest.raises(AdapterError) as refused:
        asyncio.run(read())
    assert refused.value.code == "invalid_token" and "HTTP 401" in str(refused.value)


def test_a_payload_with_non_string_keys_reads_back_as_stored(tmp_path: Path) -> None:
    """The library stores maps with integer keys (only the API refuses them); a MessagePack page carries them
    as they are, and reading it must not fail the whole read-back."""
    data_dir = tmp_path / "data"

    async def write() -> None:
        async with EventStore(str(data_dir)) as store:
            await store.append(Event("custom", aggregate_id="agg:int-keys", data={1: "one", "two": 2}))

    asyncio.run(write())
    running = start_server(tmp_path / "server", data_dir=data_dir)
    try:
        adapter = HttpEventStoreAdapter(running.base_url, token=running.token("reader"))

        async def read() -> list[StoredEvent]:
            await adapter.open()
            try:
                return [e async for e in adapter.read_all()]
            finally:
                await adapter.close()

        recovered = asyncio.run(read())
    finally:
        assert running.stop() == 0, running.log()
    assert [dict(e.data) for e in recovered] == [{1: "one", "two": 2}]
