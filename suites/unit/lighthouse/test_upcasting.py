"""Schema evolution: a log written under version 1 is read as the current version, and never rewritten."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from lighthouse import Event, EventFilter, EventStore, EventType, InvalidEvent, UpcasterRegistry


def v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v2 split the shell command string into argv."""
    out = {k: v for k, v in data.items() if k != "command"}
    out["argv"] = data["command"].split()
    return out


def v2_to_v3(data: dict[str, Any]) -> dict[str, Any]:
    """v3 added the working directory, defaulting to the agent's root."""
    return {**data, "cwd": data.get("cwd", "/")}


def registry() -> UpcasterRegistry:
    upcasters = UpcasterRegistry()
    upcasters.register(EventType.COMMAND_RECEIVED, 1, v1_to_v2)
    upcasters.register("command_received", 2, v2_to_v3)
    return upcasters


async def write_version_one_log(path: Path) -> list[Event]:
    """What the platform wrote before the model moved on: no upcasters, schema_version 1."""
    async with EventStore(path) as store:
        old = [
            await store.append(
                Event(EventType.COMMAND_RECEIVED, aggregate_id=f"command:{i}", data={"command": f"ls -l /tmp/{i}"})
            )
            for i in range(3)
        ]
        other = await store.append(Event(EventType.AGENT_HEARTBEAT, aggregate_id="agent:a", data={"beat": 1}))
        return [*old, other]


def test_a_version_one_log_is_read_as_version_three_everywhere(store_dir: Path, run) -> None:
    async def scenario() -> None:
        written = await write_version_one_log(store_dir)
        assert all(e.schema_version == 1 for e in written)
        async with EventStore(store_dir, upcasters=registry()) as store:
            current = await store.append(
                Event(
                    EventType.COMMAND_RECEIVED,
                    aggregate_id="command:new",
                    data={"argv": ["pwd"], "cwd": "/srv"},
                    schema_version=3,
                )
            )
            expected_first = {"argv": ["ls", "-l", "/tmp/0"], "cwd": "/"}

            by_sequence = await store.get(1)
            by_id = await store.get(written[0].event_id)
            queried = (await store.query(EventFilter(event_types=[EventType.COMMAND_RECEIVED]))).events
            replayed = [e async for e in store.replay()]
            subscription = store.subscribe(from_sequence=1)
            caught_up = [await subscription.__anext__() for _ in range(5)]
            await subscription.aclose()

            for event in (by_sequence, by_id, queried[0], replayed[0], caught_up[0]):
                assert (event.schema_version, event.data) == (3, expected_first)
                assert event.event_id == written[0].event_id and event.sequence == 1
            assert [e.data["argv"][-1] for e in queried[:3]] == ["/tmp/0", "/tmp/1", "/tmp/2"]
            assert replayed[3].data == {"beat": 1} and replayed[3].schema_version == 1  # no upcaster for this type
            assert replayed[4] == current and current.data == {"argv": ["pwd"], "cwd": "/srv"}

        async with EventStore(store_dir) as store:  # the log itself was never rewritten
            raw = await store.get(1)
            assert (raw.schema_version, raw.data) == (1, {"command": "ls -l /tmp/0"})

    run(scenario())


def test_a_version_two_event_takes_only_the_remaining_step(store_dir: Path, run) -> None:
    async def scenario() -> None:
        async with EventStore(store_dir) as store:
            await store.append(
                Event(EventType.COMMAND_RECEIVED, aggregate_id="c", data={"argv": ["id"]}, schema_version=2)
            )
        async with EventStore(store_dir, upcasters=registry()) as store:
            event = await store.get(1)
            assert (event.schema_version, event.data) == (3, {"argv": ["id"], "cwd": "/"})

    run(scenario())


def test_a_missing_upcaster_step_is_a_clear_error_on_read(store_dir: Path, run) -> None:
    async def scenario() -> None:
        await write_version_one_log(store_dir)
        only_v2 = UpcasterRegistry()
        only_v2.register(EventType.COMMAND_RECEIVED, 2, v2_to_v3)
        async with EventStore(store_dir, upcasters=only_v2) as store:
            with pytest.raises(InvalidEvent, match="no upcaster"):
                await store.get(1)
            assert (await store.get(4)).data == {"beat": 1}

    run(scenario())


def test_upcaster_registration_rules() -> None:
    upcasters = registry()
    assert upcasters.current_version(EventType.COMMAND_RECEIVED) == 3
    assert upcasters.current_version("agent_heartbeat") == 1
    with pytest.raises(ValueError):
        upcasters.register(EventType.COMMAND_RECEIVED, 1, v1_to_v2)
    with pytest.raises(ValueError):
        upcasters.register(EventType.COMMAND_RECEIVED, 0, v1_to_v2)
    with pytest.raises(InvalidEvent):
        upcasters.register("not_a_type", 1, v1_to_v2)
    assert not UpcasterRegistry() and upcasters


def test_an_idempotent_retry_of_an_old_version_event_still_matches(store_dir: Path, run) -> None:
    """Retries compare what is stored, not what readers see after upcasting."""

    async def scenario() -> None:
        event = Event(EventType.COMMAND_RECEIVED, aggregate_id="c", data={"command": "true"})
        async with EventStore(store_dir) as store:
            stored = await store.append(event)
        async with EventStore(store_dir, upcasters=registry()) as store:
            again = await store.append(event)
            assert again.sequence == stored.sequence and store.head_sequence == 1

    run(scenario())


def test_live_subscribers_see_upcast_events_like_catch_up_does(store_dir: Path, run) -> None:
    async def scenario() -> None:
        async with EventStore(store_dir, upcasters=registry()) as store:
            subscription = store.subscribe()
            first = asyncio.create_task(subscription.__anext__())
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 5
            while store.stats().subscribers == 0:
                assert loop.time() < deadline, "subscriber never went live"
                await asyncio.sleep(0)
            await store.append(Event(EventType.COMMAND_RECEIVED, aggregate_id="c", data={"command": "ls"}))
            live = await first
            assert (live.schema_version, live.data) == (3, {"argv": ["ls"], "cwd": "/"})
            await subscription.aclose()

    run(scenario())
