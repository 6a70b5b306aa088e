"""Generated agent traffic: reproducible to the byte, realistic in shape, and consistent with its oracle."""

from __future__ import annotations

import hashlib
import math
import os
import statistics
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from testkit.adapters.base import EVENT_FIELDS
from testkit.data import (
    BRIDGE_AGENT,
    EVENT_TYPES,
    MAX_EVENT_BYTES,
    AgentRole,
    AgentSessionGenerator,
    PayloadSizes,
    SessionPlan,
    TimingModel,
    TrafficClass,
    compare,
    encoded_size,
    project,
    traffic_class,
)

REPO = Path(__file__).resolve().parents[3]
SMALL = PayloadSizes(max_bytes=4096)  # keeps big streams quick; payload sizes have their own tests


def stream(seed: int = 11, n: int = 20_000, **knobs: Any) -> list[dict[str, Any]]:
    knobs.setdefault("payload_sizes", SMALL)
    return list(AgentSessionGenerator(seed, **knobs).events(n))


@pytest.fixture(scope="module")
def events() -> list[dict[str, Any]]:
    return stream()


def packed(items: Any) -> bytes:
    return msgpack.packb(items, use_bin_type=True)


# reproducibility -------------------------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_bytes() -> None:
    first, second = AgentSessionGenerator(42, agents=6), AgentSessionGenerator(42, agents=6)
    assert packed(list(first.events(3000))) == packed(list(second.events(3000)))
    assert packed([s.events for s in first.sessions(15)]) == packed([s.events for s in second.sessions(15)])
    again = first.events(3000)  # every call replays from the seed
    assert packed(list(again)) == packed(list(second.events(3000)))


def test_the_same_seed_gives_the_same_bytes_in_another_process_with_another_hash_seed() -> None:
    script = ("import hashlib, msgpack; from testkit.data import AgentSessionGenerator;"
              "print(hashlib.sha256(msgpack.packb(list(AgentSessionGenerator(42, agents=6).events(3000)),"
              " use_bin_type=True)).hexdigest())")
    here = hashlib.sha256(packed(list(AgentSessionGenerator(42, agents=6).events(3000)))).hexdigest()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(REPO)}
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == here


def test_different_seeds_give_different_streams() -> None:
    one, two = stream(1, 500), stream(2, 500)
    assert {e["event_id"] for e in one}.isdisjoint({e["event_id"] for e in two})
    assert [e["event_type"] for e in one] != [e["event_type"] for e in two]


# shape of each event ---------------------------------------------------------------------------------------


def test_events_are_valid_store_input(events: list[dict[str, Any]]) -> None:
    assert len({e["event_id"] for e in events}) == len(events)
    prefixes = {"command", "pair_session", "agent", "file", "session"}
    for e in events:
        assert tuple(e) == EVENT_FIELDS
        assert e["event_type"] in EVENT_TYPES
        aggregate_type, _, key = e["aggregate_id"].partition(":")
        assert aggregate_type == e["aggregate_type"] and aggregate_type in prefixes and key
        assert isinstance(e["timestamp"], float) and math.isfinite(e["timestamp"])
        assert e["schema_version"] == 1 and e["metadata"]["traffic"] == traffic_class(e["event_type"]).value
    assert max(encoded_size(e) for e in events) <= MAX_EVENT_BYTES


def test_every_causation_names_an_earlier_event_of_the_same_flow(events: list[dict[str, Any]]) -> None:
    by_id: dict[str, dict[str, Any]] = {}
    for e in events:
        cause = e["causation_id"]
        if e["event_type"] == "agent_registered":
            assert cause is None
        else:
            assert cause in by_id, f"{e['event_type']} names a cause that is not earlier in the stream"
            parent = by_id[cause]
            assert (parent["correlation_id"] == e["correlation_id"]
                    or parent["event_type"] in ("session_started", "agent_registered"))
        by_id[e["event_id"]] = e


def test_one_command_is_one_flow_from_proposal_to_its_file_changes(events: list[dict[str, Any]]) -> None:
    flows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        if e["aggregate_type"] in ("command", "file"):
            flows[e["correlation_id"]].append(e)
    for flow in flows.values():
        commands = {e["aggregate_id"] for e in flow if e["aggregate_type"] == "command"}
        assert len(commands) == 1
        kinds = [e["event_type"] for e in flow]
        assert kinds[:2] == ["command_received", "command_validated"]
        if "command_rejected" in kinds:
            assert not {"command_executed", "command_failed"} & set(kinds)
        files = [i for i, k in enumerate(kinds) if k.startswith("file_")]
        if files:
            assert kinds.index("command_executed") < files[0]


def test_file_events_chain_their_content_hashes(events: list[dict[str, Any]]) -> None:
    current: dict[str, str] = {}
    changed = 0
    for e in events:
        if not e["event_type"].startswith("file_"):
            continue
        data = e["data"]
        assert data["previous_hash"] == current.get(data["path"])
        assert (data["previous_hash"] is None) == (e["event_type"] == "file_created")
        if e["event_type"] == "file_deleted":
            del current[data["path"]]
        else:
            assert hashlib.sha256(data["content"].encode()).hexdigest() == data["content_hash"]
            assert len(data["content"]) == data["size"]
            current[data["path"]] = data["content_hash"]
        changed += 1
    assert changed > 100


# the knobs -------------------------------------------------------------------------------------------------


def risk_shares(events: list[dict[str, Any]]) -> tuple[Counter[str], int]:
    risks = Counter(e["data"]["risk"] for e in events if e["event_type"] == "command_validated")
    return risks, sum(risks.values())


@pytest.mark.parametrize(("danger", "escalation"), [(0.08, 0.12), (0.3, 0.05), (0.0, 0.4)])
def test_danger_and_escalation_shares_follow_their_knobs(danger: float, escalation: float) -> None:
    risks, total = risk_shares(stream(5, 12_000, danger_ratio=danger, escalation_rate=escalation))
    assert total > 1500
    for share, wanted in ((risks["dangerous"] / total, danger), (risks["review"] / total, escalation)):
        assert abs(share - wanted) <= 4 * math.sqrt(wanted * (1 - wanted) / total) + 1e-9


def test_decisions_follow_the_policy(events: list[dict[str, Any]]) -> None:
    outcome = project(events)
    decided = [c for c in outcome.commands.values() if c.decision]
    assert len(decided) > 1000
    for command in decided:
        if command.risk == "safe":
            assert (command.decision, command.approver, command.approval_method) == ("approved", BRIDGE_AGENT, "policy")
        elif command.risk == "dangerous":
            assert (command.decision, command.approver, command.approval_method) == ("rejected", BRIDGE_AGENT, "policy")
        else:
            assert command.escalated_to not in (None, command.agent_id)
            assert command.approval_method in ("expert", "timeout")
            assert command.approver == (command.escalated_to if command.approval_method == "expert" else BRIDGE_AGENT)
    methods = Counter(c.approval_method for c in decided if c.risk == "review")
    assert methods["expert"] > methods["timeout"] > 0


def test_experts_answer_within_their_latency_or_the_escalation_times_out() -> None:
    generator = AgentSessionGenerator(3, agents=6, escalation_rate=0.4, payload_sizes=SMALL)
    skew = {a.agent_id: a.clock_skew_s for a in generator.roster} | {BRIDGE_AGENT: 0.0}
    escalated_at: dict[str, float] = {}
    latencies, timeouts = [], []
    for e in generator.events(10_000):
        true_time = e["timestamp"] - skew[e["source_agent"]]
        if e["event_type"] == "command_escalated":
            escalated_at[e["aggregate_id"]] = true_time
        elif e["event_type"] in ("command_approved", "command_rejected") and e["aggregate_id"] in escalated_at:
            waited = true_time - escalated_at[e["aggregate_id"]]
            (timeouts if e["data"]["approval_method"] == "timeout" else latencies).append(waited)
    assert len(latencies) > 200 and timeouts
    assert min(latencies) >= 1.0 - 1e-5 and max(latencies) <= 30.0 + 1e-5
    assert all(abs(t - 30.0) < 1e-5 for t in timeouts)


def test_each_agent_writes_with_its_own_fixed_clock_skew() -> None:
    generator = AgentSessionGenerator(8, agents=5, payload_sizes=SMALL)
    assert len({a.clock_skew_s for a in generator.roster}) == 5
    skew = {a.agent_id: a.clock_skew_s for a in generator.roster}
    received: dict[str, dict[str, Any]] = {}
    checked = 0
    low, high = generator.plan.timing.step_latency_s
    for e in generator.events(5000):
        if e["event_type"] == "command_received":
            received[e["aggregate_id"]] = e
        elif e["event_type"] == "command_validated":
            proposal = received[e["aggregate_id"]]
            bridge_work = e["timestamp"] - proposal["timestamp"] + skew[proposal["source_agent"]]
            assert low - 2e-6 <= bridge_work <= high + 2e-6
            checked += 1
    assert checked > 500


@pytest.mark.parametrize("mix", [(0.7, 0.2, 0.1), (0.8, 0.1, 0.1), (0.7, 0.1, 0.2)])
def test_the_traffic_mix_follows_its_shares(mix: tuple[float, float, float]) -> None:
    # Every file change follows a validated command, so validation cannot fall much below 2/3.
    counts = Counter(traffic_class(e["event_type"]) for e in stream(9, 10_000, mix=mix))
    for cls, share in zip(TrafficClass, mix):
        assert abs(counts[cls] / 10_000 - share) < 0.01


def test_traffic_follows_business_hours() -> None:
    timing = TimingModel()
    events = stream(11, 20_000, agents=2)
    span_h = (events[-1]["timestamp"] - events[0]["timestamp"]) / 3600
    assert span_h > 24  # the stream crosses a night
    inside = sum(timing.in_business_hours(e["timestamp"]) for e in events) / len(events)
    assert 0.85 < inside < 1.0  # mostly office hours, and some night owls


def test_bursts_compress_the_gaps_between_actions() -> None:
    def median_gap(burst_probability: float) -> float:
        timing = TimingModel(burst_probability=burst_probability)
        last: dict[str, float] = {}
        gaps = []
        for e in stream(4, 4000, timing=timing):
            if e["event_type"] == "command_received":
                session = e["metadata"]["session_id"]
                if session in last:
                    gaps.append(e["timestamp"] - last[session])
                last[session] = e["timestamp"]
        return statistics.median(gaps)

    assert median_gap(1.0) * 3 < median_gap(0.0)


def test_pair_sessions_take_every_path() -> None:
    outcome = project(stream(6, 15_000, pair_rate=0.5))
    states = Counter(p.state for p in outcome.pair_sessions.values())
    assert {"requested", "completed", "cancelled"} <= set(states)
    completed = [p for p in outcome.pair_sessions.values() if p.state == "completed"]
    assert all(p.partner not in (None, p.requester) for p in completed)
    assert any(p.suggestions for p in completed)
    assert all(p.partner is None for p in outcome.pair_sessions.values() if p.state == "requested")


# the oracle ------------------------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    agents=st.integers(1, 8),
    danger=st.floats(0, 0.5),
    escalation=st.floats(0, 0.5),
    pair_rate=st.floats(0, 1),
    disconnect_rate=st.floats(0, 1),
)
def test_each_session_knows_what_its_replay_must_rebuild(
    seed: int, agents: int, danger: float, escalation: float, pair_rate: float, disconnect_rate: float
) -> None:
    generator = AgentSessionGenerator(seed, agents=agents, danger_ratio=danger, escalation_rate=escalation,
                                      pair_rate=pair_rate, disconnect_rate=disconnect_rate, payload_sizes=SMALL)
    for session in generator.sessions(8):
        replayed = project(session.events)
        comparison = compare(session.expected, replayed)
        assert comparison.equal, comparison.mismatches
        state = session.expected.agent_sessions[session.session_id].state
        assert state in ("ended", "disconnected")
        assert session.events[-1]["event_type"] in ("session_ended", "agent_disconnected")
        assert all(c.status in ("executed", "failed", "rejected") for c in session.expected.commands.values())


def test_compare_names_the_field_that_differs(events: list[dict[str, Any]]) -> None:
    expected = project(events)
    tampered = project(events)
    command = next(iter(tampered.commands.values()))
    original = command.status
    command.status = "lost"
    result = compare(expected, tampered)
    assert not result.equal and result.matched == result.total - 1 and 0.99 < result.ratio < 1
    assert result.mismatches == (f"commands[{command.command_id}].status: expected {original!r}, got 'lost'",)
    del tampered.files[next(iter(tampered.files))]
    assert compare(expected, tampered).matched == result.matched - 1


def test_agent_tallies_add_up(events: list[dict[str, Any]]) -> None:
    outcome = project(events)
    assert sum(t.events for t in outcome.agents.values()) == len(events) == outcome.event_count
    proposed = sum(t.commands_proposed for t in outcome.agents.values())
    decided = sum(t.commands_approved + t.commands_rejected for t in outcome.agents.values())
    assert proposed == len(outcome.commands) and proposed - decided <= 10  # a few in flight at the cut
    assert outcome.agents[BRIDGE_AGENT].decisions_made > 0


# the API ---------------------------------------------------------------------------------------------------


def test_roles_can_be_chosen_and_bad_knobs_are_refused() -> None:
    generator = AgentSessionGenerator(1, agents=[AgentRole.ARCHITECT, "tester", "tester"])
    assert [a.agent_id for a in generator.roster] == ["architect-1", "tester-1", "tester-2"]
    assert {e["source_agent"] for e in generator.events(2000)} <= {"architect-1", "tester-1", "tester-2", BRIDGE_AGENT}
    with pytest.raises(ValueError, match="at least one agent"):
        AgentSessionGenerator(1, agents=0)
    with pytest.raises(TypeError, match="seed must be an int"):
        AgentSessionGenerator("7")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        AgentSessionGenerator(1, dangr_ratio=0.1)
    with pytest.raises(ValueError, match="danger_ratio"):
        SessionPlan(danger_ratio=1.5)
    with pytest.raises(ValueError, match="must not exceed 1"):
        SessionPlan(danger_ratio=0.6, escalation_rate=0.6)
    with pytest.raises(ValueError, match="mix"):
        SessionPlan(mix=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError):
        AgentSessionGenerator(1, agents=["janitor"])


def test_traffic_mixes_in_invalid_events_without_changing_the_valid_stream() -> None:
    generator = AgentSessionGenerator(12, invalid_ratio=0.1, payload_sizes=SMALL)
    items = list(generator.traffic(5000))
    bad = [i for i in items if i.expected_error is not None]
    assert abs(len(bad) / len(items) - 0.1) < 4 * math.sqrt(0.1 * 0.9 / len(items))
    assert {i.expected_error for i in bad} <= {"invalid_event", "event_too_large"}
    valid = [i.event for i in items if i.expected_error is None]
    assert packed(valid) == packed(list(generator.events(len(valid))))


def test_event_types_are_the_stores_vocabulary() -> None:
    assert len(EVENT_TYPES) == len(set(EVENT_TYPES)) == 27
    assert all(isinstance(traffic_class(t), TrafficClass) for t in EVENT_TYPES)
    with pytest.raises(ValueError, match="unknown event type"):
        traffic_class("command_teleported")


def test_the_projection_reads_pair_endings_written_as_custom_actions() -> None:
    def pair_event(kind: str, **data: Any) -> dict[str, Any]:
        return {"event_type": kind, "source_agent": "reviewer-1", "data": {"pair_id": "p1", **data}}

    opened = [pair_event("pair_session_requested", requester="builder-1", mode="REVIEW"),
              pair_event("pair_session_accepted", partner="reviewer-1")]
    for action, state in (("pair_session_completed", "completed"), ("pair_session_expired", "expired"),
                          ("pair_session_cancelled", "cancelled"), ("something_else", "active")):
        outcome = project([*opened, pair_event("custom", action=action)])
        assert outcome.pair_sessions["p1"].state == state
