"""The bridge's state is a projection of the log: a snapshot plus the events after it equals a full
replay, a server killed with SIGKILL comes back with exactly the state it had, and deadlines are
judged by event time, so an escalation that expired while the server was down is rejected, never
approved."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import msgpack
from lighthouse import EventStore
from lighthouse.bridge.projection import BridgeProjection
from lighthouse.models import Event
from lighthouse.server.auth import Role

from .scenario_driver import ScenarioDriver
from .support import RunningServer, poll_until, start_server
from .test_bridge_scenarios import generated

CONFIG = {"bridge": {"expert_timeout_seconds": 3.0, "tick_seconds": 0.05, "snapshot_every_events": 0}}


def replay_log(data_dir: Path) -> list[Event]:
    async def read() -> list[Event]:
        async with EventStore(data_dir) as store:
            return [event async for event in store.replay(1)]

    return asyncio.run(read())


def drive(server: RunningServer, seed: int, sessions: int) -> None:
    gen, events = generated(seed=seed, sessions=sessions)
    driver = ScenarioDriver(server, gen.roster)
    driver.drive(events)
    driver.wait_for_timeouts(server.client("replay-admin", Role.ADMIN), timeout=15)


def test_a_killed_server_restores_snapshot_plus_tail_to_the_same_state(tmp_path: Path) -> None:
    first = start_server(tmp_path, config=CONFIG)
    try:
        drive(first, seed=3, sessions=2)
        admin = first.client("replay-admin", Role.ADMIN)
        snapshot_at = admin.post("/bridge/snapshot").json()["at_sequence"]
        drive(first, seed=4, sessions=2)
        before: dict[str, Any] = admin.get("/bridge/state").json()
        assert before["last_sequence"] > snapshot_at
    finally:
        first.kill()  # no graceful shutdown, hence no newer snapshot: the restart must use snapshot + tail

    second = start_server(tmp_path, data_dir=first.data_dir, secret=first.secret, config=CONFIG)
    try:
        admin = second.client("replay-admin", Role.ADMIN)
        bridge = admin.get("/health/detailed").json()["bridge"]
        assert bridge["restored_from_snapshot"] == snapshot_at
        assert admin.get("/bridge/state").json() == before
    finally:
        assert second.stop() == 0, second.log()

    log = replay_log(first.data_dir)
    full = BridgeProjection()
    full.apply_all(log)
    assert full.to_state() == before, "the live state is what a full replay of the log gives"


def test_snapshot_at_any_point_plus_tail_equals_full_replay_and_duplicates_change_nothing(tmp_path: Path) -> None:
    server = start_server(tmp_path, config=CONFIG)
    try:
        drive(server, seed=9, sessions=3)
    finally:
        assert server.stop() == 0, server.log()
    log = replay_log(server.data_dir)
    full = BridgeProjection()
    full.apply_all(log)
    assert full.state["commands"] and full.state["agent_sessions"]
    for cut in range(0, len(log) + 1, max(1, len(log) // 25)):
        head = BridgeProjection()
        head.apply_all(log[:cut])
        stored = msgpack.unpackb(msgpack.packb(head.to_state()), strict_map_key=False)  # as a snapshot is stored
        resumed = BridgeProjection(stored)
        resumed.apply_all(log[cut:])
        assert resumed.to_state() == full.to_state(), f"snapshot at {cut} + tail differs from a full replay"
    twice = BridgeProjection()
    for event in log:
        twice.apply(event)
        assert twice.apply(event) == "already applied"
    assert twice.to_state() == full.to_state()


def test_an_escalation_that_expires_while_the_server_is_down_is_rejected_on_restart(tmp_path: Path) -> None:
    config = {"bridge": {"expert_timeout_seconds": 0.5, "tick_seconds": 0.05}}
    first = start_server(tmp_path, config=config)
    builder = first.client("builder-down")
    command = builder.post("/validate", json={"tool": "Bash", "tool_input": {"command": "pip install numpy"},
                                              "preferred_expert": "expert-away"}).json()
    assert command["status"] == "escalated"
    first.kill()
    deadline = command["deadline"]
    poll_until(lambda: time.time() > deadline + 0.5, timeout=10, what="the deadline to pass")

    second = start_server(tmp_path, data_dir=first.data_dir, secret=first.secret, config=config)
    try:
        observer = second.client("observer", Role.EXPERT)
        final = observer.get(f"/validate/{command['command_id']}", params={"wait": 5}).json()
        assert (final["status"], final["approval_method"], final["approver"]) == (
            "rejected", "timeout", "validation-bridge")
        late = second.client("expert-away", Role.EXPERT).post(
            f"/validate/{command['command_id']}/decision", json={"decision": "approve"})
        assert late.status_code == 409
    finally:
        assert second.stop() == 0, second.log()
    replayed = BridgeProjection()
    replayed.apply_all(replay_log(first.data_dir))
    assert replayed.state["commands"][command["command_id"]]["status"] == "rejected"
