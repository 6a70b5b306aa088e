"""One simulated agent's traffic: its session's events, generated once, replayed with fresh ids.

Generating sessions costs about 100 us per event, more than sending one; so each agent generates a
pool of its own session up front (mix, payload sizes and think times as ``testkit.data`` makes them)
and replays it, giving every replayed event a new ``event_id`` so each write is a distinct write that
the history check can find by id. Bodies are pre-encoded JSON with a slot for the id.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from testkit.data import AgentSessionGenerator

__all__ = ["AgentTraffic", "Request"]


@dataclass(frozen=True, slots=True)
class Request:
    path: str
    body: bytes
    event_ids: tuple[str, ...]
    think_s: float  # the session's pause before the next request (session mode)


class AgentTraffic:
    """The endless request stream of one agent (``seed`` decides its session)."""

    def __init__(self, seed: int, *, pool: int, batch: int, think_scale: float = 1.0, max_think_s: float = 5.0,
                 pause: Callable[[], None] | None = None) -> None:
        """``pause`` is called every few events while the pool is generated: under gevent, a yield to the hub,
        so a worker generating many agents' pools still answers its master's heartbeats."""
        events = []
        for event in itertools.islice(AgentSessionGenerator(seed, agents=3).events(), pool):
            events.append(event)
            if pause is not None and len(events) % 10 == 0:
                pause()
        self._tails: list[bytes] = []
        self._thinks: list[float] = []
        for event, following in zip(events, events[1:] + events[:1]):
            body = {k: v for k, v in event.items() if k not in ("event_id", "source_agent") and v is not None}
            self._tails.append(b"," + json.dumps(body, separators=(",", ":")).encode()[1:])
            gap = float(following.get("timestamp", 0) or 0) - float(event.get("timestamp", 0) or 0)
            self._thinks.append(min(max_think_s, max(0.0, gap * think_scale)))
        self._batch = batch
        self._next = 0

    def __next__(self) -> Request:
        ids: list[str] = []
        bodies: list[bytes] = []
        think = 0.0
        for _ in range(self._batch):
            index = self._next
            self._next = (index + 1) % len(self._tails)
            event_id = str(uuid.uuid4())
            ids.append(event_id)
            bodies.append(b'{"event_id":"' + event_id.encode() + b'"' + self._tails[index])
            think += self._thinks[index]
        if self._batch == 1:
            return Request("/events", bodies[0], tuple(ids), think)
        return Request("/events/batch", b'{"events":[' + b",".join(bodies) + b"]}", tuple(ids), think)

    def __iter__(self) -> AgentTraffic:
        return self
