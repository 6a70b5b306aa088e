"""Everything an operator can tune about the server, in one immutable place.

Limits follow the store's (an event encodes to at most 1 MiB, a batch to 10 MiB); HTTP bodies may be
somewhat larger than the encoded events because JSON is wordier than MessagePack, so the body caps
leave headroom and the store's own checks stay authoritative.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lighthouse.bridge.bridge import BridgeSettings
from lighthouse.server.alerts import AlertConfig
from lighthouse.server.limits import ConnectionLimits

__all__ = ["ServerSettings", "settings_from_config"]


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """Server behaviour. ``store_options`` are passed to ``EventStore`` when the app opens the store itself."""

    max_event_body_bytes: int = 2 * 1024 * 1024
    max_batch_body_bytes: int = 16 * 1024 * 1024
    max_small_body_bytes: int = 256 * 1024
    default_query_limit: int = 100
    retry_after_seconds: float = 1.0
    stream_buffer_events: int = 1000
    stream_send_timeout_seconds: float = 5.0
    # Bytes queued for one subscriber but not yet taken by it (lighthouse/server/backlog.py): beyond, 4408.
    stream_max_backlog_bytes: int = 1024 * 1024
    shutdown_grace_seconds: float = 10.0
    # Hostile and careless clients (see lighthouse/server/limits.py and admission.py).
    max_page_bytes: int = 4 * 1024 * 1024
    max_stream_subscribers: int = 256
    max_requests_per_principal: int = 64
    max_requests_per_principal_degraded: int = 8
    limits: ConnectionLimits = field(default_factory=ConnectionLimits)
    alerts: AlertConfig = field(default_factory=AlertConfig)
    bridge: BridgeSettings = field(default_factory=BridgeSettings)
    store_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("max_event_body_bytes", "max_batch_body_bytes", "max_small_body_bytes", "stream_buffer_events",
                     "max_page_bytes", "max_stream_subscribers", "stream_max_backlog_bytes",
                     "max_requests_per_principal",
                     "max_requests_per_principal_degraded"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer")
        if not 1 <= self.default_query_limit <= 10_000:
            raise ValueError("default_query_limit must be in 1..10000")
        for name in ("retry_after_seconds", "stream_send_timeout_seconds", "shutdown_grace_seconds"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")


def settings_from_config(raw: Any) -> tuple[ServerSettings, Any]:
    """``ServerSettings`` and an optional ``Policy`` from a JSON config object.

    ``{"server": {...ServerSettings fields}, "limits": {...ConnectionLimits fields}, "alerts": {...},
    "bridge": {...BridgeSettings fields}, "store": {...EventStore options}, "policy": {...Policy.from_dict}}``;
    every section is optional.
    Raises ``ValueError`` naming the bad part.
    """
    from lighthouse.bridge.policy import Policy

    if not isinstance(raw, dict):
        raise ValueError("the configuration must be a JSON object")
    unknown = set(raw) - {"server", "limits", "alerts", "bridge", "store", "policy"}
    if unknown:
        raise ValueError(f"unknown configuration sections {sorted(unknown)}")
    server = dict(raw.get("server", {}))
    allowed = set(ServerSettings.__dataclass_fields__) - {"alerts", "bridge", "store_options", "limits"}
    bad = set(server) - allowed
    if bad:
        raise ValueError(f"unknown server settings {sorted(bad)}")
    limits = dict(raw.get("limits", {}))
    bad = set(limits) - set(ConnectionLimits.__dataclass_fields__)
    if bad:
        raise ValueError(f"unknown limits settings {sorted(bad)}")
    bridge = dict(raw.get("bridge", {}))
    bad = set(bridge) - set(BridgeSettings.__dataclass_fields__)
    if bad:
        raise ValueError(f"unknown bridge settings {sorted(bad)}")
    store = raw.get("store", {})
    if not isinstance(store, dict):
        raise ValueError("store must be an object of EventStore options")
    try:
        settings = ServerSettings(
            **server,
            limits=ConnectionLimits(**limits),
            alerts=AlertConfig.from_dict(raw.get("alerts", {})),
            bridge=BridgeSettings(**bridge),
            store_options=dict(store),
        )
    except TypeError as exc:
        raise ValueError(str(exc)) from None
    policy = Policy.from_dict(raw["policy"]) if "policy" in raw else None
    return settings, policy
