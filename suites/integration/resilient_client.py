"""A client that appends through an unreliable network the way a careful agent would.

Each event carries its own id and timestamp, so resending it after a timeout or a dropped
connection is idempotent: the server answers 200 with the stored copy if the first attempt had
landed. Every write is recorded in a testkit ``History`` (invoke, then ok / fail / unknown), which
the durability checker later holds against the log: no acknowledged event lost, none duplicated.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from testkit.adapters.base import StoredEvent
from testkit.checkers import History

__all__ = ["ResilientAppender", "new_event", "stored_events"]


def new_event(aggregate: str, i: int) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "event_type": "custom", "aggregate_id": aggregate,
            "timestamp": 1_700_000_000.0 + i, "data": {"i": i}}


def stored_events(raw: list[dict[str, Any]]) -> list[StoredEvent]:
    return [StoredEvent(e["event_id"], e["sequence"], e["event_type"], e["aggregate_id"], e["source_agent"],
                        e["data"], e["correlation_id"], e["causation_id"], e["aggregate_version"]) for e in raw]


@dataclass
class ResilientAppender:
    base_url: str
    headers: dict[str, str]
    history: History
    timeout_s: float = 1.0
    give_up_after_s: float = 20.0
    attempts: int = 0
    transport_errors: int = 0
    replayed: int = 0  # retries the server answered with the already stored copy (200)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._client = httpx.Client(base_url=self.base_url, headers=self.headers, timeout=self.timeout_s,
                                    transport=httpx.HTTPTransport(retries=0))

    def close(self) -> None:
        self._client.close()

    def append(self, event: dict[str, Any]) -> bool:
        """True once acknowledged; records the outcome either way."""
        op = self.history.invoke("append", [event])
        deadline = time.monotonic() + self.give_up_after_s
        while time.monotonic() < deadline:
            self.attempts += 1
            try:
                response = self._client.post("/events", json=event)
            except httpx.TransportError as exc:  # timeout, refused, reset, dropped: outcome unknown, retry
                self.transport_errors += 1
                self.errors.append(type(exc).__name__)
                time.sleep(0.02)
                continue
            if response.status_code in (200, 201):
                if response.status_code == 200:
                    self.replayed += 1
                self.history.ok(op, [response.json()["sequence"]])
                return True
            body = response.json()
            if body.get("retryable"):
                time.sleep(0.05)
                continue
            self.history.fail(op, body["error"])
            return False
        self.history.unknown(op, "gave up retrying")
        return False
