"""Seeded generators of realistic multi-agent coordination traffic, invalid inputs, and expected outcomes.

Quick start::

    from testkit.data import AgentSessionGenerator, project

    gen = AgentSessionGenerator(seed=7, agents=5, danger_ratio=0.1)
    for session in gen.sessions(10):
        ...  # append session.events, then compare a replay with session.expected
    events = list(gen.events(10_000))  # the interleaved stream; project(events) is its oracle

Same seed, same bytes: no global ``random`` is used and no set order is ever iterated.
"""

from testkit.data.agents import BRIDGE_AGENT, Agent, AgentRole, make_roster
from testkit.data.commands import FileEffect, Proposal, Risk, classify, propose
from testkit.data.events import (
    BATCH_TOO_LARGE,
    EVENT_TOO_LARGE,
    EVENT_TYPES,
    INVALID_EVENT,
    MAX_BATCH_BYTES,
    MAX_BATCH_EVENTS,
    MAX_EVENT_BYTES,
    SCHEMA_VERSION,
    TrafficClass,
    encoded_size,
    traffic_class,
    valid_batches,
)
from testkit.data.expected import (
    AgentSessionOutcome,
    AgentTally,
    CommandOutcome,
    ExpectedOutcome,
    OutcomeComparison,
    PairOutcome,
    compare,
    project,
)
from testkit.data.invalid import REQUIRED_FIELDS, InvalidCase, InvalidEventGenerator, InvalidKind
from testkit.data.payloads import PayloadSizes, TextFiller
from testkit.data.sessions import AgentSessionGenerator, GeneratedSession, SessionPlan, TrafficItem
from testkit.data.timing import TimingModel

__all__ = [
    "BATCH_TOO_LARGE",
    "BRIDGE_AGENT",
    "EVENT_TOO_LARGE",
    "EVENT_TYPES",
    "INVALID_EVENT",
    "MAX_BATCH_BYTES",
    "MAX_BATCH_EVENTS",
    "MAX_EVENT_BYTES",
    "REQUIRED_FIELDS",
    "SCHEMA_VERSION",
    "Agent",
    "AgentRole",
    "AgentSessionGenerator",
    "AgentSessionOutcome",
    "AgentTally",
    "CommandOutcome",
    "ExpectedOutcome",
    "FileEffect",
    "GeneratedSession",
    "InvalidCase",
    "InvalidEventGenerator",
    "InvalidKind",
    "OutcomeComparison",
    "PairOutcome",
    "PayloadSizes",
    "Proposal",
    "Risk",
    "SessionPlan",
    "TextFiller",
    "TimingModel",
    "TrafficClass",
    "TrafficItem",
    "classify",
    "compare",
    "encoded_size",
    "make_roster",
    "project",
    "propose",
    "traffic_class",
    "valid_batches",
]
