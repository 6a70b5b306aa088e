"""The expected outcome of generated traffic: the state a correct replay must reconstruct.

The generator writes down what it decided (its intent) as an :class:`ExpectedOutcome`; :func:`project`
derives the same structure by folding events. Unit tests hold the two equal, so either can serve as
the oracle a store's replay (or a bridge's projection) is compared with, field by field (:func:`compare`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = [
    "AgentSessionOutcome",
    "AgentTally",
    "CommandOutcome",
    "ExpectedOutcome",
    "OutcomeComparison",
    "PairOutcome",
    "compare",
    "project",
]


@dataclass(slots=True)
class CommandOutcome:
    """A command's final state. ``status``: received, validated, escalated, approved, rejected, executed, failed."""

    command_id: str
    agent_id: str
    tool: str
    risk: str | None = None
    status: str = "received"
    decision: str | None = None  # approved | rejected
    approver: str | None = None
    approval_method: str | None = None  # policy | expert | timeout
    escalated_to: str | None = None


@dataclass(slots=True)
class PairOutcome:
    """A pair session's final state: requested (never accepted), active, completed, cancelled or expired."""

    pair_id: str
    requester: str
    mode: str
    partner: str | None = None
    state: str = "requested"
    suggestions: int = 0
    review_decision: str | None = None


@dataclass(slots=True)
class AgentSessionOutcome:
    """One agent session: active, ended, or disconnected (the agent vanished without ending it)."""

    session_id: str
    agent_id: str
    state: str = "active"
    heartbeats: int = 0


@dataclass(slots=True)
class AgentTally:
    """Per-agent counts; ``events`` counts events the agent is the ``source_agent`` of."""

    events: int = 0
    registrations: int = 0
    sessions: int = 0
    heartbeats: int = 0
    commands_proposed: int = 0
    commands_escalated: int = 0
    commands_approved: int = 0
    commands_rejected: int = 0
    commands_executed: int = 0
    commands_failed: int = 0
    decisions_made: int = 0
    file_changes: int = 0


@dataclass(slots=True)
class ExpectedOutcome:
    """What replaying a set of events must rebuild. ``files`` maps a path to its content hash (None: deleted)."""

    commands: dict[str, CommandOutcome] = field(default_factory=dict)
    pair_sessions: dict[str, PairOutcome] = field(default_factory=dict)
    agent_sessions: dict[str, AgentSessionOutcome] = field(default_factory=dict)
    agents: dict[str, AgentTally] = field(default_factory=dict)
    files: dict[str, str | None] = field(default_factory=dict)
    event_count: int = 0

    def tally(self, agent_id: str) -> AgentTally:
        tally = self.agents.get(agent_id)
        if tally is None:
            tally = self.agents[agent_id] = AgentTally()
        return tally

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def project(events: Iterable[Mapping[str, Any]]) -> ExpectedOutcome:
    """Fold events (in log order) into the outcome they imply; events naming unknown aggregates are skipped."""
    out = ExpectedOutcome()
    for event in events:
        _apply(out, event)
    return out


def _apply(out: ExpectedOutcome, event: Mapping[str, Any]) -> None:
    kind = str(event["event_type"])
    data: Mapping[str, Any] = event.get("data") or {}
    source = str(event["source_agent"])
    out.event_count += 1
    out.tally(source).events += 1
    if kind.startswith("command_"):
        _apply_command(out, kind, data, source)
    elif kind.startswith("pair_") or kind == "custom":
        _apply_pair(out, kind, data)
    elif kind.startswith("file_"):
        out.files[data["path"]] = None if kind == "file_deleted" else data["content_hash"]
        out.tally(source).file_changes += 1
    elif kind == "agent_registered":
        out.tally(data["agent_id"]).registrations += 1
    elif kind == "session_started":
        out.agent_sessions[data["session_id"]] = AgentSessionOutcome(data["session_id"], data["agent_id"])
        out.tally(data["agent_id"]).sessions += 1
    elif kind in ("agent_heartbeat", "session_ended", "agent_disconnected"):
        session = out.agent_sessions.get(data.get("session_id", ""))
        if session is None:
            return
        if kind == "agent_heartbeat":
            session.heartbeats += 1
            out.tally(session.agent_id).heartbeats += 1
        else:
            session.state = "ended" if kind == "session_ended" else "disconnected"


def _apply_command(out: ExpectedOutcome, kind: str, data: Mapping[str, Any], source: str) -> None:
    command_id = data["command_id"]
    if kind == "command_received":
        out.commands[command_id] = CommandOutcome(command_id, data["agent_id"], data["tool"])
        out.tally(data["agent_id"]).commands_proposed += 1
        return
    command = out.commands.get(command_id)
    if command is None:
        return
    proposer = out.tally(command.agent_id)
    if kind == "command_validated":
        command.status, command.risk = "validated", data["risk"]
    elif kind == "command_escalated":
        command.status, command.escalated_to = "escalated", data["expert"]
        proposer.commands_escalated += 1
    elif kind in ("command_approved", "command_rejected"):
        command.decision = "approved" if kind == "command_approved" else "rejected"
        command.status = command.decision
        command.approver, command.approval_method = data["approver"], data["approval_method"]
        out.tally(source).decisions_made += 1
        if kind == "command_approved":
            proposer.commands_approved += 1
        else:
            proposer.commands_rejected += 1
    elif kind == "command_executed":
        command.status = "executed"
        proposer.commands_executed += 1
    elif kind == "command_failed":
        command.status = "failed"
        proposer.commands_failed += 1


#: ``custom`` events' ``data.action`` for pair steps without an event type of their own, and the state each leaves.
_PAIR_ACTIONS = {"pair_session_cancelled": "cancelled", "pair_session_completed": "completed",
                 "pair_session_expired": "expired"}


def _apply_pair(out: ExpectedOutcome, kind: str, data: Mapping[str, Any]) -> None:
    if kind == "custom" and data.get("action") not in _PAIR_ACTIONS:
        return
    pair_id = data["pair_id"]
    if kind == "pair_session_requested":
        out.pair_sessions[pair_id] = PairOutcome(pair_id, data["requester"], data["mode"])
        return
    pair = out.pair_sessions.get(pair_id)
    if pair is None:
        return
    if kind == "pair_session_accepted":
        pair.partner, pair.state = data["partner"], "active"
    elif kind == "pair_suggestion_made":
        pair.suggestions += 1
    elif kind == "pair_review_completed":
        pair.state, pair.review_decision = "completed", data["decision"]
    else:
        pair.state = _PAIR_ACTIONS[data["action"]]


@dataclass(frozen=True, slots=True)
class OutcomeComparison:
    """Field-by-field agreement of two outcomes; ``ratio`` is the share of fields that match (target 1.0)."""

    matched: int
    total: int
    mismatches: tuple[str, ...]  # the first few differences, readable

    @property
    def ratio(self) -> float:
        return self.matched / self.total if self.total else 1.0

    @property
    def equal(self) -> bool:
        return self.matched == self.total


def compare(expected: ExpectedOutcome, actual: ExpectedOutcome, *, max_reported: int = 20) -> OutcomeComparison:
    """Compare every field of every record; a record missing on one side counts all its fields as mismatched."""
    matched = total = 0
    mismatches: list[str] = []

    def note(text: str) -> None:
        if len(mismatches) < max_reported:
            mismatches.append(text)

    for section in ("commands", "pair_sessions", "agent_sessions", "agents", "files"):
        left: dict[str, Any] = getattr(expected, section)
        right: dict[str, Any] = getattr(actual, section)
        for key in sorted(left.keys() | right.keys()):
            a, b = left.get(key), right.get(key)
            record: Any = a if a is not None else b
            names = ["value"] if section == "files" else [f.name for f in fields(record)]
            for name in names:
                total += 1
                va = (a if section == "files" else getattr(a, name, None)) if key in left else "<missing>"
                vb = (b if section == "files" else getattr(b, name, None)) if key in right else "<missing>"
                if va == vb:
                    matched += 1
                else:
                    note(f"{section}[{key}].{name}: expected {va!r}, got {vb!r}")
    total += 1
    if expected.event_count == actual.event_count:
        matched += 1
    else:
        note(f"event_count: expected {expected.event_count}, got {actual.event_count}")
    return OutcomeComparison(matched, total, tuple(mismatches))
