"""The agents of a coordination platform: who proposes work, who reviews it, who decides escalations."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

__all__ = ["BRIDGE_AGENT", "Agent", "AgentRole", "make_roster", "pick_expert", "pick_partner"]

#: The ValidationBridge's own identity as ``source_agent`` of the decisions it makes.
BRIDGE_AGENT: Final[str] = "validation-bridge"


class AgentRole(StrEnum):
    BUILDER = "builder"
    REVIEWER = "reviewer"
    TESTER = "tester"
    SECURITY_EXPERT = "security_expert"
    PERFORMANCE_EXPERT = "performance_expert"
    ARCHITECT = "architect"

    @property
    def is_expert(self) -> bool:
        """Experts decide escalated commands; others only propose and pair."""
        return self in (AgentRole.SECURITY_EXPERT, AgentRole.PERFORMANCE_EXPERT, AgentRole.ARCHITECT)


_CAPABILITIES: Final[dict[AgentRole, tuple[str, ...]]] = {
    AgentRole.BUILDER: ("code", "build", "refactor"),
    AgentRole.REVIEWER: ("review", "pair"),
    AgentRole.TESTER: ("test", "coverage"),
    AgentRole.SECURITY_EXPERT: ("security", "review", "escalation"),
    AgentRole.PERFORMANCE_EXPERT: ("performance", "profiling", "escalation"),
    AgentRole.ARCHITECT: ("architecture", "design", "escalation"),
}

#: The order roles are handed out in: a small team still has a builder, an expert and a reviewer.
_ROLE_CYCLE: Final[tuple[AgentRole, ...]] = (
    AgentRole.BUILDER,
    AgentRole.SECURITY_EXPERT,
    AgentRole.REVIEWER,
    AgentRole.TESTER,
    AgentRole.PERFORMANCE_EXPERT,
    AgentRole.ARCHITECT,
    AgentRole.BUILDER,
    AgentRole.TESTER,
    AgentRole.BUILDER,
    AgentRole.REVIEWER,
)


@dataclass(frozen=True, slots=True)
class Agent:
    """One agent; ``clock_skew_s`` is added to every timestamp it writes (its clock is wrong by that much)."""

    agent_id: str
    role: AgentRole
    clock_skew_s: float

    @property
    def capabilities(self) -> tuple[str, ...]:
        return _CAPABILITIES[self.role]


def make_roster(
    rng: random.Random, agents: int | Sequence[AgentRole], *, max_clock_skew_s: float
) -> tuple[Agent, ...]:
    """Build the team: ``agents`` is a head count (roles assigned in a fixed cycle) or an explicit role list."""
    if isinstance(agents, int):
        if agents < 1:
            raise ValueError(f"need at least one agent, got {agents}")
        roles = [_ROLE_CYCLE[i % len(_ROLE_CYCLE)] for i in range(agents)]
    else:
        roles = [AgentRole(role) for role in agents]
        if not roles:
            raise ValueError("need at least one agent role")
    if max_clock_skew_s < 0:
        raise ValueError(f"max_clock_skew_s must be >= 0, got {max_clock_skew_s}")
    seen: dict[AgentRole, int] = {}
    roster = []
    for role in roles:
        seen[role] = seen.get(role, 0) + 1
        skew = rng.uniform(-max_clock_skew_s, max_clock_skew_s) if max_clock_skew_s else 0.0
        roster.append(Agent(f"{role.value}-{seen[role]}", role, round(skew, 6)))
    return tuple(roster)


def pick_expert(
    rng: random.Random, roster: Sequence[Agent], wanted: AgentRole, *, exclude: str
) -> Agent | None:
    """The expert an escalation goes to: the wanted specialty if present, else any expert, else a reviewer."""
    for candidates in (
        [a for a in roster if a.role is wanted and a.agent_id != exclude],
        [a for a in roster if a.role.is_expert and a.agent_id != exclude],
        [a for a in roster if a.role is AgentRole.REVIEWER and a.agent_id != exclude],
    ):
        if candidates:
            return rng.choice(candidates)
    return None


def pick_partner(rng: random.Random, roster: Sequence[Agent], *, exclude: str) -> Agent | None:
    """A pair partner: reviewers first, anyone else otherwise."""
    reviewers = [a for a in roster if a.role is AgentRole.REVIEWER and a.agent_id != exclude]
    others = [a for a in roster if a.agent_id != exclude]
    pool = reviewers if reviewers and rng.random() < 0.6 else others
    return rng.choice(pool) if pool else None
