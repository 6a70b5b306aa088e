"""Health states and the record of every transition between them.

``healthy -> degraded -> read_only -> failed``: degraded still accepts writes (low space warning,
quarantined corruption), read_only refuses them while reads continue, failed means the store
cannot serve at all. Every transition is kept (bounded) and counted, because an operator's first
question after an incident is "when did it change, and why".
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = ["HealthMonitor", "HealthState", "StoreHealth", "Transition"]


class HealthState(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    READ_ONLY = "read_only"
    FAILED = "failed"


_RANK = {HealthState.HEALTHY: 0, HealthState.DEGRADED: 1, HealthState.READ_ONLY: 2, HealthState.FAILED: 3}


@dataclass(frozen=True, slots=True)
class Transition:
    at: float
    old: HealthState
    new: HealthState
    reason: str


@dataclass(frozen=True, slots=True)
class StoreHealth:
    state: HealthState
    reasons: dict[str, str]
    durability: str
    durable_acks: bool
    transitions: int
    recent_transitions: list[Transition]
    damage: list[dict[str, Any]]
    lost_sequences: list[tuple[int, int]]
    voided_sequences: list[tuple[int, int]]
    last_error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def writable(self) -> bool:
        return _RANK[self.state] < _RANK[HealthState.READ_ONLY]

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "writable": self.writable,
            "reasons": dict(self.reasons),
            "durability": self.durability,
            "durable_acks": self.durable_acks,
            "transitions": self.transitions,
            "recent_transitions": [
                {"at": t.at, "from": t.old.value, "to": t.new.value, "reason": t.reason} for t in self.recent_transitions
            ],
            "damage": list(self.damage),
            "lost_sequences": [list(r) for r in self.lost_sequences],
            "voided_sequences": [list(r) for r in self.voided_sequences],
            "last_error": self.last_error,
            "details": dict(self.details),
        }


class HealthMonitor:
    """Conditions raise or clear a state; the store's state is the worst active condition."""

    def __init__(self, *, keep: int = 100) -> None:
        self._conditions: dict[str, tuple[HealthState, str]] = {}
        self._state = HealthState.HEALTHY
        self._transitions: deque[Transition] = deque(maxlen=keep)
        self.transition_count = 0
        self.last_error: str | None = None

    @property
    def state(self) -> HealthState:
        return self._state

    def conditions(self) -> dict[str, str]:
        return {name: f"{state.value}: {reason}" for name, (state, reason) in self._conditions.items()}

    def has(self, name: str) -> bool:
        return name in self._conditions

    def reason_for(self, state: HealthState) -> str | None:
        for cond_state, reason in self._conditions.values():
            if cond_state == state:
                return reason
        return None

    def raise_condition(self, name: str, state: HealthState, reason: str) -> None:
        self._conditions[name] = (state, reason)
        self._recompute(reason)

    def clear_condition(self, name: str) -> None:
        if self._conditions.pop(name, None) is not None:
            self._recompute(f"{name} cleared")

    def _recompute(self, reason: str) -> None:
        worst = HealthState.HEALTHY
        for state, _ in self._conditions.values():
            if _RANK[state] > _RANK[worst]:
                worst = state
        if worst != self._state:
            self._transitions.append(Transition(time.time(), self._state, worst, reason))
            self.transition_count += 1
            self._state = worst

    def recent(self) -> list[Transition]:
        return list(self._transitions)
