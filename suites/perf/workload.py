"""The events and query shapes every perf figure uses, so both stores do exactly the same work.

Events are the ~200-byte coordination records ADR-004's figures are quoted for (machine-facts.md measured the
raw baselines with ~100-byte payloads). They cycle through four event types and sixteen agents, which makes
the size of every query's answer known in advance: a test checks the answer's size before trusting a timing,
so a store that answers a cheaper question than asked cannot look fast.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

__all__ = [
    "AGENTS",
    "EVENT_TYPES",
    "FILLED_EVENTS",
    "FILL_BATCH",
    "FILTER_WINDOW",
    "RANGE_SIZE",
    "FilterSpec",
    "coordination_event",
    "coordination_events",
    "filter_over_window",
]

EVENT_TYPES: tuple[str, ...] = ("command_received", "command_approved", "agent_heartbeat", "file_modified")
AGENTS = 16
RANGE_SIZE = 1_000  # ADR-004: "time-range query of 1,000 events"
FILLED_EVENTS = 100_000  # ADR-004: queries and replay are judged with at least 100,000 events stored
FILL_BATCH = 100  # each bulk-load batch is one group commit: a time range of 1,000 events spans ten of them
FILTER_WINDOW = 10_000  # ADR-004: "complex filter over 10,000 events"

# Types 2 and 3 (heartbeat, file change) from agents 2, 3, 7 and 11: since agent = i % 16 and type = i % 4,
# every event of those agents has one of those types, so a window of 10,000 events holds exactly 2,500 matches.
_FILTER_TYPES = frozenset({"agent_heartbeat", "file_modified"})
_FILTER_AGENTS = frozenset({"agent-2", "agent-3", "agent-7", "agent-11"})


def coordination_event(index: int, *, stream: int = 0) -> dict[str, Any]:
    """Event number ``index`` of ``stream``: a plain dict for the adapters, with a unique client-chosen id."""
    return {
        "event_id": str(uuid.UUID(int=(stream << 64) | index)),
        "event_type": EVENT_TYPES[index % len(EVENT_TYPES)],
        "aggregate_id": f"command:{index // 4}",
        "aggregate_type": "command",
        "source_agent": f"agent-{index % AGENTS}",
        "correlation_id": f"corr-{index // 4}",
        "data": {"tool": "Bash", "command": f"pytest tests/unit -k case_{index}", "cwd": "/work/project",
                 "risk": "low"},
    }


def coordination_events(start: int, count: int, *, stream: int = 0) -> list[dict[str, Any]]:
    return [coordination_event(i, stream=stream) for i in range(start, start + count)]


@dataclass(frozen=True, slots=True)
class FilterSpec:
    """A multi-field filter over a window of sequences; ``expected`` is the exact size of the answer."""

    event_types: frozenset[str]
    source_agents: frozenset[str]
    first_sequence: int
    last_sequence: int
    expected: int


def filter_over_window(first_sequence: int) -> FilterSpec:
    """Two of four types AND four of sixteen agents over ``FILTER_WINDOW`` sequences from ``first_sequence``.

    The window must start on a multiple of 16 events (sequence 1 is event 0) for ``expected`` to be exact.
    """
    if (first_sequence - 1) % AGENTS:
        raise ValueError(f"the window must start at 1 + a multiple of {AGENTS}, got {first_sequence}")
    return FilterSpec(_FILTER_TYPES, _FILTER_AGENTS, first_sequence, first_sequence + FILTER_WINDOW - 1,
                      FILTER_WINDOW * len(_FILTER_AGENTS) // AGENTS)
