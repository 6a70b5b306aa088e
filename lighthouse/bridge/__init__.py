"""The ValidationBridge: policy decisions on agents' proposed commands, expert escalation with
deadlines, and pair sessions; every step is an event, and its state is a projection of the log."""

from lighthouse.bridge.bridge import BridgeSettings, ValidationBridge
from lighthouse.bridge.errors import BridgeConflict, BridgeError, BridgeForbidden, BridgeInvalid, BridgeNotFound
from lighthouse.bridge.policy import PathRule, Policy, Risk, ShellRule, Verdict, default_policy
from lighthouse.bridge.projection import BridgeProjection
from lighthouse.bridge.vocabulary import BRIDGE_AGENT, BRIDGE_EVENT_TYPES

__all__ = [
    "BRIDGE_AGENT",
    "BRIDGE_EVENT_TYPES",
    "BridgeConflict",
    "BridgeError",
    "BridgeForbidden",
    "BridgeInvalid",
    "BridgeNotFound",
    "BridgeProjection",
    "BridgeSettings",
    "PathRule",
    "Policy",
    "Risk",
    "ShellRule",
    "ValidationBridge",
    "Verdict",
    "default_policy",
]
