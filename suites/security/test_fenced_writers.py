"""Two writers on one directory with the LOCK file deleted: no acknowledged event may be lost (issue 13)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from lighthouse import Event, EventStore
from lighthouse.fencing import OWNER_FILE, WriterFenced
from suites.integration.support import RunningServer, start_server

pytestmark = [pytest.mark.smoke, pytest.mark.ci]


def append(server: RunningServer, agent: str, i: int) -> tuple[int, dict]:
    response = server.client(agent).post("/events", json={"event_type": "custom", "aggregate_id": f"fence:{i % 3}",
                                                           "data": {"i": i}})
    return response.status_code, response.json()


async def stored_ids(directory: Path) -> set[str]:
    async with EventStore(directory) as store:
        return {event.event_id async for event in store.replay(1)}


def test_a_second_server_after_the_lock_is_deleted_cannot_destroy_acknowledged_events(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = start_server(tmp_path / "a", data_dir=data)
    second = None
    acknowledged: list[str] = []
    try:
        for i in range(30):
            status, body = append(first, "writer-a", i)
            assert status == 201
            acknowledged.append(body["event_id"])
        (data / "LOCK").unlink()
        second = start_server(tmp_path / "b", data_dir=data)  # the flock no longer protects anything
        assert second.alive(), "the fault happened: a second writer opened the directory"
        refusals = []
        for i in range(30, 90):
            server, agent = (second, "writer-b") if i % 2 else (first, "writer-a")
            status, body = append(server, agent, i)
            if status in (200, 201):
                acknowledged.append(body["event_id"])
            else:
                refusals.append((server is first, status, body["error"]))
        assert refusals and all(from_first and status == 503 for from_first, status, _ in refusals), refusals
        assert {error for *_, error in refusals} == {"writer_fenced"}, "the losing writer fails with a typed error"
        detailed = first.client("root", "admin").get("/health/detailed").json()
        assert detailed["state"] == "failed" and "writer_fenced" in str(detailed["reasons"])
        assert len(acknowledged) == 30 + 30, "every event the second writer was sent was acknowledged"
    finally:
        first.stop()
        if second is not None:
            second.stop()
    present = asyncio.run(stored_ids(data))
    lost = [event_id for event_id in acknowledged if event_id not in present]
    assert lost == [], f"{len(lost)} acknowledged events lost"


def test_a_superseded_store_refuses_to_write_and_leaves_the_new_writer_intact(tmp_path: Path) -> None:
    async def scenario() -> None:
        old = await EventStore.open(tmp_path)
        await old.append(Event("custom", aggregate_id="x", event_id="one"))
        (tmp_path / "LOCK").unlink()
        new = await EventStore.open(tmp_path)
        await new.append(Event("custom", aggregate_id="x", event_id="two"))
        with pytest.raises(WriterFenced):
            await old.append(Event("custom", aggregate_id="x", event_id="three"))
        assert old.health().state.value == "failed"
        await new.append(Event("custom", aggregate_id="x", event_id="four"))
        await old.close()
        await new.close()
        assert '"epoch": 2' in (tmp_path / OWNER_FILE).read_text(), "each writer claims the next epoch"
        assert await stored_ids(tmp_path) == {"one", "two", "four"}

    asyncio.run(scenario())
