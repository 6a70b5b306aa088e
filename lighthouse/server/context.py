"""Everything one running app shares between its handlers, and the wrapper every endpoint runs in.

The wrapper is where bad input becomes a 4xx with a JSON body: handlers raise typed errors
(``ApiError``, store errors, bridge errors, auth errors) and never build error responses
themselves. Only an exception nobody anticipated becomes a 500 (still with a JSON body), and the
fuzzing suite fails on any 500.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from lighthouse.bridge.bridge import ValidationBridge
from lighthouse.bridge.errors import BridgeError
from lighthouse.bridge.vocabulary import BRIDGE_AGENT
from lighthouse.errors import LighthouseError
from lighthouse.health import HealthState
from lighthouse.server.admission import InflightBudget
from lighthouse.server.alerts import AlertEvaluator
from lighthouse.server.auth import AuthError, Forbidden, Principal, Role, TokenAuthority
from lighthouse.server.reserved import RESERVED_AGENTS
from lighthouse.server.codec import JSON, response_codec
from lighthouse.server.metrics import ServerMetrics
from lighthouse.server.problems import ApiError
from lighthouse.server.settings import ServerSettings
from lighthouse.store import EventStore

__all__ = ["ServerContext", "as_api_error", "context_of", "endpoint", "worst_state"]

_log = logging.getLogger("lighthouse.server")
_RANK = {HealthState.HEALTHY: 0, HealthState.DEGRADED: 1, HealthState.READ_ONLY: 2, HealthState.FAILED: 3}

Handler = Callable[[Request], Awaitable[Response]]


def worst_state(*states: HealthState) -> HealthState:
    return max(states, key=lambda s: _RANK[s])


@dataclass(slots=True)
class ServerContext:
    """The app's shared objects; ``store``, ``alerts``, ``metrics`` and ``bridge`` exist once started."""

    authority: TokenAuthority
    settings: ServerSettings
    store: EventStore | None = None
    alerts: AlertEvaluator | None = None
    metrics: ServerMetrics | None = None
    bridge: ValidationBridge | None = None
    streams: set[Any] = field(default_factory=set)
    connections: Any = None  # limits.ConnectionRegistry when served by ``serve`` (none when embedded)
    closing: bool = False
    inflight_writes: int = 0
    writes_drained: asyncio.Event = field(default_factory=asyncio.Event)
    admission: InflightBudget = field(init=False)

    def __post_init__(self) -> None:
        self.admission = InflightBudget(self)

    # ---------------------------------------------------------------- health and admission

    def state(self) -> HealthState:
        """The server's health: the worse of the store's own state and the alert triggers'."""
        assert self.store is not None and self.alerts is not None
        return worst_state(self.store.health().state, self.alerts.state)

    def reasons(self) -> dict[str, str]:
        assert self.store is not None and self.alerts is not None
        return {**self.store.health().reasons, **self.alerts.reasons()}

    def retry_after(self) -> dict[str, str]:
        return {"Retry-After": str(max(1, int(round(self.settings.retry_after_seconds))))}

    def admit_write(self) -> None:
        """Refuse writes (503 + Retry-After) while shutting down or while a trigger holds the server
        read-only; reads continue. (A read-only store refuses by itself, with the same answer.)"""
        if self.closing:
            raise ApiError(503, "shutting_down", "the server is shutting down", retryable=True,
                           headers=self.retry_after())
        assert self.alerts is not None
        if self.alerts.state not in (HealthState.READ_ONLY, HealthState.FAILED):
            return
        state = self.state()
        if state in (HealthState.READ_ONLY, HealthState.FAILED):
            reasons = "; ".join(f"{k}: {v}" for k, v in self.reasons().items()) or state.value
            raise ApiError(503, "store_read_only", f"writes are refused while {state.value} ({reasons})",
                           retryable=True, headers=self.retry_after(), state=state.value)

    def write_started(self) -> None:
        if not self.inflight_writes:
            self.writes_drained.clear()
        self.inflight_writes += 1

    def write_finished(self) -> None:
        self.inflight_writes -= 1
        if self.inflight_writes == 0:
            self.writes_drained.set()

    # ---------------------------------------------------------------- authentication

    def principal(self, request: Request, role: Role = Role.AGENT) -> Principal:
        return self.authenticate(request.headers.get("authorization"), role)

    def authenticate(self, authorization: str | None, role: Role = Role.AGENT) -> Principal:
        """The principal of an ``Authorization`` header value, refusing reserved agents and too small a role."""
        return self.accept(self.authority.authenticate(authorization), role)

    def accept(self, principal: Principal, role: Role = Role.AGENT) -> Principal:
        """``principal`` (a verified token's) unless it names a reserved agent or has too small a role."""
        if principal.agent_id in RESERVED_AGENTS:
            raise Forbidden("that agent id is reserved for the server itself", code="reserved_agent")
        if principal.agent_id == BRIDGE_AGENT or (self.bridge is not None and principal.agent_id == self.bridge.identity):
            raise Forbidden("that agent id is reserved for the ValidationBridge", code="reserved_agent")
        principal.require(role)
        return principal


def context_of(request: Any) -> ServerContext:
    return request.app.state.ctx  # type: ignore[no-any-return]


def _error_response(request: Request, error: ApiError) -> Response:
    codec = response_codec(request) if request is not None else JSON
    return codec.response(error.body(), status=error.status, headers=error.headers)


def as_api_error(exc: BaseException, ctx: ServerContext) -> ApiError:
    """Map any exception a handler raised to the error the client gets."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, AuthError):
        headers = {"WWW-Authenticate": f'Bearer error="{exc.code}"'} if exc.status == 401 else {}
        return ApiError(exc.status, exc.code, exc.message, headers=headers)
    if isinstance(exc, BridgeError):
        return ApiError(exc.status, exc.code, exc.message).with_details(exc.details)
    if isinstance(exc, LighthouseError):
        return ApiError.from_store(exc, retry_after=ctx.settings.retry_after_seconds)
    _log.exception("unexpected error while serving a request")
    return ApiError(500, "internal_error", f"unexpected {type(exc).__name__}; the server log has details")


def endpoint(route: str) -> Callable[[Handler], Handler]:
    """Wrap a handler: errors to JSON bodies, and request metrics labelled by the route template."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def wrapped(request: Request) -> Response:
            ctx = context_of(request)
            started = time.perf_counter()
            try:
                response = await handler(request)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the one place that turns every error into a response
                error = as_api_error(exc, ctx)
                if ctx.metrics is not None:
                    ctx.metrics.count_error(error.code)
                response = _error_response(request, error)
            if ctx.metrics is not None:
                ctx.metrics.count_request(request.method, route, response.status_code)
            elapsed = f"{(time.perf_counter() - started) * 1000:.3f}"
            response.headers.setdefault("X-Response-Time-Ms", elapsed)
            response.headers.setdefault("Server-Timing", f"app;dur={elapsed}")  # W3C: what load generators read
            return response

        return wrapped

    return decorate
