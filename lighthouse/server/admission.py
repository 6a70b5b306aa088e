"""Per-principal admission: one greedy client is throttled (429 + Retry-After), not the whole server.

Every authenticated HTTP request counts against its principal's in-flight budget; a request over the
budget is answered 429 at once, before it costs the store anything. While a latency or error alert is
raised the budget shrinks (``max_requests_per_principal_degraded``), so the principals with the most
work in flight are the ones slowed down, and a single agent can no longer push the append p99 up far
enough to starve everybody else. Read-only is left to the store's own inability to write (disk, I/O).
Requests without a valid token pass through untouched: the handler answers them 401, cheaply.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final

from lighthouse.health import HealthState
from lighthouse.server.auth import AuthError

if TYPE_CHECKING:
    from lighthouse.server.context import ServerContext

__all__ = ["InflightBudget", "PrincipalAdmission", "too_many_requests"]

_EXEMPT_PATHS: Final[frozenset[str]] = frozenset({"/health", "/metrics", "/openapi.json"})


class InflightBudget:
    """Requests in flight per principal, and how many were shed: one count for every way a request
    enters the app (the middleware below and the lean append path), so a budget cannot be doubled."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self.inflight: dict[str, int] = {}
        self.shed = 0

    def budget(self) -> int:
        settings = self.ctx.settings
        alerts = self.ctx.alerts
        if alerts is not None and alerts.state is not HealthState.HEALTHY:
            return int(settings.max_requests_per_principal_degraded)
        return int(settings.max_requests_per_principal)

    def enter(self, agent: str) -> int | None:
        """Count a request of ``agent`` in: ``None`` when admitted, else the in-flight count it was refused at."""
        held = self.inflight.get(agent, 0)
        if held >= self.budget():
            self.shed += 1
            if self.ctx.metrics is not None:
                self.ctx.metrics.count_error("too_many_requests")
            return held
        self.inflight[agent] = held + 1
        return None

    def leave(self, agent: str) -> None:
        held = self.inflight[agent] - 1
        if held:
            self.inflight[agent] = held
        else:
            del self.inflight[agent]


class PrincipalAdmission:
    """ASGI middleware enforcing the per-principal in-flight budget of ``ctx.settings``."""

    def __init__(self, app: Any, ctx: Any) -> None:
        self.app = app
        self.ctx = ctx

    def _agent(self, scope: dict[str, Any]) -> str | None:
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                try:
                    return str(self.ctx.authority.authenticate(value.decode("latin-1")).agent_id)
                except (AuthError, UnicodeDecodeError):
                    return None
        return None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        agent = self._agent(scope)
        if agent is not None:
            scope.setdefault("state", {})["lighthouse_principal"] = agent
        if agent is None or scope["type"] != "http" or scope.get("path") in _EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        gate: InflightBudget = self.ctx.admission
        refused_at = gate.enter(agent)
        if refused_at is not None:
            await too_many_requests(send, self.ctx.settings.retry_after_seconds, refused_at)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            gate.leave(agent)


async def too_many_requests(send: Any, retry_after: float, inflight: int) -> None:
    """The 429 answer (with Retry-After) for a principal already holding ``inflight`` requests."""
    body = json.dumps({
        "error": "too_many_requests",
        "message": f"this principal already has {inflight} requests in flight; retry later",
        "retryable": True,
    }).encode()
    await send({"type": "http.response.start", "status": 429, "headers": [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(max(1, round(retry_after))).encode()),
    ]})
    await send({"type": "http.response.body", "body": body})
