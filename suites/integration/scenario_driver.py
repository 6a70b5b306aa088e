"""Drives generated multi-agent traffic (testkit.data) through a live server's HTTP API.

The generator writes down a whole coordination history, including the bridge's own decisions. The
driver replays the *intent* of it: agents append their own events (sessions, heartbeats, file
changes, command results), propose commands through ``POST /validate``, experts decide through the
decision endpoint, pair partners use the pair endpoints, and everything the generator attributes
to the bridge (validation, escalation, policy and timeout decisions) is left for the real bridge
to do. The server's log must then project to the generator's expected outcome.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from lighthouse.server.auth import Role
from testkit.data import Agent, AgentRole, AgentSessionOutcome, AgentTally, CommandOutcome, ExpectedOutcome, PairOutcome

from .support import RunningServer, poll_until

__all__ = ["ScenarioDriver", "outcome_from_bridge_state"]

_AGENT_OWN = frozenset({
    "agent_registered", "session_started", "agent_heartbeat", "session_ended", "agent_disconnected",
    "command_executed", "command_failed", "file_created", "file_modified", "file_deleted",
})
_EVENT_FIELDS = ("event_id", "event_type", "aggregate_id", "aggregate_type", "correlation_id", "causation_id",
                 "timestamp", "data", "metadata", "schema_version")


@dataclass
class ScenarioDriver:
    server: RunningServer
    roster: Iterable[Agent]
    clients: dict[str, httpx.Client] = field(default_factory=dict)
    timed_out: list[str] = field(default_factory=list)
    requests: int = 0

    def __post_init__(self) -> None:
        for agent in self.roster:
            role = Role.EXPERT if agent.role.is_expert or agent.role is AgentRole.REVIEWER else Role.AGENT
            self.clients[agent.agent_id] = self.server.client(agent.agent_id, role, timeout=30)

    def _call(self, agent: str, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self.clients[agent].request(method, path, **kwargs)
        self.requests += 1
        assert response.status_code in (200, 201), f"{method} {path} as {agent}: {response.status_code} {response.text}"
        return response.json()  # type: ignore[no-any-return]

    def drive(self, events: list[dict[str, Any]]) -> None:
        experts = {e["data"]["command_id"]: e["data"]["expert"] for e in events if e["event_type"] == "command_escalated"}
        risks = {e["data"]["command_id"]: e["data"]["risk"] for e in events if e["event_type"] == "command_validated"}
        for event in events:
            self._drive_one(event, experts, risks)

    def _drive_one(self, event: Mapping[str, Any], experts: Mapping[str, str | None], risks: Mapping[str, str]) -> None:
        kind, source, data = event["event_type"], event["source_agent"], event["data"]
        if kind in _AGENT_OWN:
            self._call(source, "POST", "/events", json={k: event[k] for k in _EVENT_FIELDS})
        elif kind == "command_received":
            answer = self._call(source, "POST", "/validate", json={
                "tool": data["tool"], "tool_input": data["tool_input"], "session_id": data["session_id"],
                "command_id": data["command_id"], "correlation_id": event["correlation_id"],
                "causation_id": event["causation_id"], "preferred_expert": experts.get(data["command_id"]),
            })
            assert answer["risk"] == risks[data["command_id"]], (data["tool"], data["tool_input"], answer)
        elif kind in ("command_approved", "command_rejected"):
            method = data["approval_method"]
            if method == "expert":
                decision = "approve" if kind == "command_approved" else "reject"
                self._call(source, "POST", f"/validate/{data['command_id']}/decision",
                           json={"decision": decision, "reason": data["reason"]})
            elif method == "timeout":
                self.timed_out.append(data["command_id"])  # the bridge decides this one by itself, later
            # policy decisions were made by the bridge inside POST /validate: nothing to send
        elif kind == "pair_session_requested":
            self._call(source, "POST", "/pair", json={"pair_id": data["pair_id"], "mode": data["mode"],
                                                      "task": data["task"]})
        elif kind == "pair_session_accepted":
            self._call(source, "POST", f"/pair/{data['pair_id']}/accept")
        elif kind == "pair_suggestion_made":
            self._call(source, "POST", f"/pair/{data['pair_id']}/suggest", json={
                "suggestion": data["suggestion"], "suggestion_id": data["suggestion_id"], "kind": data["kind"]})
        elif kind == "pair_review_completed":
            self._call(source, "POST", f"/pair/{data['pair_id']}/review", json={
                "decision": data["decision"], "feedback": data["feedback"],
                "accepted_suggestions": data["accepted_suggestions"]})
        elif kind == "custom" and data.get("action") == "pair_session_cancelled":
            self._call(source, "POST", f"/pair/{data['pair_id']}/cancel", json={"reason": data["reason"]})
        elif kind not in ("command_validated", "command_escalated"):
            raise AssertionError(f"the driver does not know how to replay {kind}")

    def wait_for_timeouts(self, observer: httpx.Client, timeout: float) -> None:
        """Until the bridge has written a timeout decision for every escalation nobody answered."""
        def all_decided() -> bool:
            for command_id in self.timed_out:
                state = observer.get(f"/validate/{command_id}").json()
                if state["approval_method"] != "timeout":
                    return False
            return True

        deadline = time.monotonic() + timeout
        poll_until(all_decided, timeout=max(0.1, deadline - time.monotonic()), interval=0.1,
                   what="the bridge to time out unanswered escalations")


def outcome_from_bridge_state(state: Mapping[str, Any]) -> ExpectedOutcome:
    """The bridge's projected state in the generator's outcome shape, for a field-by-field comparison."""
    out = ExpectedOutcome()
    for c in state["commands"].values():
        out.commands[c["command_id"]] = CommandOutcome(
            c["command_id"], c["agent_id"], c["tool"], c["risk"], c["status"], c["decision"], c["approver"],
            c["approval_method"], c["escalated_to"])
    for p in state["pair_sessions"].values():
        out.pair_sessions[p["pair_id"]] = PairOutcome(
            p["pair_id"], p["requester"], p["mode"], p["partner"], p["state"], p["suggestions"], p["review_decision"])
    for s in state["agent_sessions"].values():
        out.agent_sessions[s["session_id"]] = AgentSessionOutcome(s["session_id"], s["agent_id"], s["state"],
                                                                   s["heartbeats"])
    for agent, tally in state["agents"].items():
        out.agents[agent] = AgentTally(**{k: v for k, v in tally.items() if k != "recent_commands"})
    out.files = dict(state["files"])
    out.event_count = sum(t["events"] for t in state["agents"].values())
    return out
