"""The events the ValidationBridge writes and reads, and the names inside them.

The bridge is event sourced: nothing it decides exists anywhere but in these events, so the
projection (which reads them) and the bridge (which writes them) share this one vocabulary. It
matches the testkit data generator's, so generated sessions and bridge-driven ones project alike.
"""

from __future__ import annotations

from typing import Final

from lighthouse.models import EventType

__all__ = [
    "APPROVAL_METHODS",
    "BRIDGE_AGENT",
    "BRIDGE_EVENT_TYPES",
    "DECISIONS",
    "PAIR_ACTIONS",
    "PAIR_MODES",
    "REVIEW_DECISIONS",
    "command_aggregate",
    "pair_aggregate",
]

#: The bridge's own identity: ``source_agent`` of policy and timeout decisions. No token may name it.
BRIDGE_AGENT: Final[str] = "validation-bridge"

#: Types only the bridge writes (agents reach them through the bridge's endpoints, never directly).
BRIDGE_EVENT_TYPES: Final[frozenset[EventType]] = frozenset({
    EventType.COMMAND_RECEIVED,
    EventType.COMMAND_VALIDATED,
    EventType.COMMAND_ESCALATED,
    EventType.COMMAND_APPROVED,
    EventType.COMMAND_REJECTED,
    EventType.PAIR_SESSION_REQUESTED,
    EventType.PAIR_SESSION_ACCEPTED,
    EventType.PAIR_SUGGESTION_MADE,
    EventType.PAIR_REVIEW_COMPLETED,
})

DECISIONS: Final[tuple[str, ...]] = ("approve", "reject")
APPROVAL_METHODS: Final[tuple[str, ...]] = ("policy", "expert", "timeout")
PAIR_MODES: Final[tuple[str, ...]] = ("PASSIVE", "ACTIVE", "COLLABORATIVE", "REVIEW")
REVIEW_DECISIONS: Final[tuple[str, ...]] = ("approve", "modify", "reject")

#: ``custom`` events' ``data.action`` for pair steps that have no event type of their own.
PAIR_COMPLETED: Final[str] = "pair_session_completed"
PAIR_CANCELLED: Final[str] = "pair_session_cancelled"
PAIR_EXPIRED: Final[str] = "pair_session_expired"
PAIR_ACTIONS: Final[tuple[str, ...]] = (PAIR_COMPLETED, PAIR_CANCELLED, PAIR_EXPIRED)


def command_aggregate(command_id: str) -> str:
    return f"command:{command_id}"


def pair_aggregate(pair_id: str) -> str:
    return f"pair_session:{pair_id}"
