"""The Starlette application: routes, startup (open store, start bridge and alert loop), shutdown.

``create_app(path_or_store, secret=...)`` builds one self-contained app: its own metrics registry,
alert evaluator, bridge and token authority, so several can live in one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route, WebSocketRoute

from lighthouse.bridge.bridge import ValidationBridge
from lighthouse.bridge.policy import Policy
from lighthouse.errors import LighthouseError
from lighthouse.models import Event, EventType
from lighthouse.server.access_log import AccessLog
from lighthouse.server.admission import PrincipalAdmission
from lighthouse.server.append_front import AppendFront
from lighthouse.server.alerts import AlertChange, AlertEvaluator
from lighthouse.server.auth import TokenAuthority
from lighthouse.server.codec import JSON, response_codec
from lighthouse.server.context import ServerContext, context_of, endpoint
from lighthouse.server.metrics import ServerMetrics
from lighthouse.server.openapi import openapi_document
from lighthouse.server.problems import ApiError
from lighthouse.server.routes import bridge as bridge_routes
from lighthouse.server.routes import events as event_routes
from lighthouse.server.routes import health as health_routes
from lighthouse.server.routes.stream import CLOSE_GOING_AWAY, stream
from lighthouse.server.settings import ServerSettings
from lighthouse.store import EventStore

__all__ = ["SERVER_AGENT", "LighthouseApp", "create_app"]

_log = logging.getLogger("lighthouse.server")

#: ``source_agent`` of the events the server itself writes (degradation entered / cleared).
SERVER_AGENT = "lighthouse-server"


@endpoint("/openapi.json")
async def _openapi(request: Request) -> Response:
    return JSON.response(request.app.state.openapi)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Router-level errors (unknown path, wrong method) in the same JSON shape as every other error."""
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(_allowed_methods(request))
    error = ApiError(exc.status_code, code, str(exc.detail), headers=headers)
    ctx = context_of(request)
    if ctx.metrics is not None:
        ctx.metrics.count_error(code)
    return response_codec(request).response(error.body(), status=error.status, headers=error.headers)


def _allowed_methods(request: Request) -> list[str]:
    """The methods of the path template this request hit (Starlette's 405 names only one route's).

    Templates are taken in routing order, so ``/events/batch`` is not also ``/events/{event_id}``.
    """
    scope = dict(request.scope, method="__none__")
    template: str | None = None
    methods: set[str] = set()
    for route in request.app.routes:
        if not isinstance(route, Route) or not route.methods or route.matches(scope)[0] is Match.NONE:
            continue
        template = template or route.path
        if route.path == template:
            methods |= route.methods
    return sorted(methods)


def _routes() -> list[Any]:
    e, h, b = event_routes, health_routes, bridge_routes
    return [
        Route("/events", e.append_event, methods=["POST"]),
        Route("/events", e.query_events, methods=["GET"]),
        Route("/events/batch", e.append_batch, methods=["POST"]),
        Route("/events/{event_id}", e.get_event, methods=["GET"]),
        WebSocketRoute("/stream", stream),
        Route("/health", h.health, methods=["GET"]),
        Route("/health/detailed", h.health_detailed, methods=["GET"]),
        Route("/metrics", h.metrics, methods=["GET"]),
        Route("/openapi.json", _openapi, methods=["GET"]),
        Route("/admin/alerts", h.get_alerts, methods=["GET"]),
        Route("/admin/alerts", h.put_alerts, methods=["PUT"]),
        Route("/validate", b.validate, methods=["POST"]),
        Route("/validate/{command_id}", b.command_status, methods=["GET"]),
        Route("/validate/{command_id}/decision", b.decide, methods=["POST"]),
        Route("/pair", b.pair_request, methods=["POST"]),
        Route("/pair/{pair_id}", b.pair_status, methods=["GET"]),
        Route("/pair/{pair_id}/accept", b.pair_accept, methods=["POST"]),
        Route("/pair/{pair_id}/suggest", b.pair_suggest, methods=["POST"]),
        Route("/pair/{pair_id}/review", b.pair_review, methods=["POST"]),
        Route("/pair/{pair_id}/complete", b.pair_complete, methods=["POST"]),
        Route("/pair/{pair_id}/cancel", b.pair_cancel, methods=["POST"]),
        Route("/bridge/state", b.bridge_state, methods=["GET"]),
        Route("/bridge/snapshot", b.bridge_snapshot, methods=["POST"]),
    ]


class LighthouseApp(Starlette):
    """Starlette with the two append routes answered ahead of its middleware stack, by ``front``
    (``lighthouse.server.append_front``). ``front = None`` sends them through the stack and router too,
    and so does adding middleware or an exception handler: what an embedder adds must see every request."""

    front: AppendFront | None = None

    def add_middleware(self, middleware_class: Any, *args: Any, **kwargs: Any) -> None:
        super().add_middleware(middleware_class, *args, **kwargs)
        self.front = None

    def add_exception_handler(self, exc_class_or_status_code: Any, handler: Any) -> None:
        super().add_exception_handler(exc_class_or_status_code, handler)
        self.front = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        front = self.front
        if front is not None and front.takes(scope):
            await front(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


async def _record_degradation(ctx: ServerContext, change: AlertChange) -> None:
    """Write the level change into the log itself, so an incident can be reconstructed from the log."""
    assert ctx.store is not None and ctx.alerts is not None
    rule = ctx.alerts.config.rules[change.rule]
    entered = change.new > change.old
    event = Event(
        EventType.DEGRADATION_ENTERED if entered else EventType.DEGRADATION_CLEARED,
        aggregate_id=f"alert:{change.rule}",
        source_agent=SERVER_AGENT,
        data={
            "trigger": change.rule,
            "level": change.new.name.lower(),
            "previous_level": change.old.name.lower(),
            "value": change.value,
            "state": change.state.value,
            "thresholds": rule.to_dict(),
        },
    )
    try:
        await ctx.store.append(event)
    except LighthouseError as exc:
        _log.warning("could not record alert change %s in the log: %s", change, exc)


async def _evaluate_alerts(ctx: ServerContext, record: bool) -> None:
    """Re-judge the triggers continuously; log, count and (if ``record``) write every level change."""
    assert ctx.alerts is not None and ctx.metrics is not None
    while True:
        await asyncio.sleep(ctx.alerts.config.evaluate_interval_seconds)
        for change in ctx.alerts.evaluate():
            _log.warning(
                "alert %s: %s -> %s (value %r, server state now %s)",
                change.rule, change.old.name, change.new.name, change.value, ctx.state().value,
            )
            ctx.metrics.alert_transitions.labels(alert=change.rule, level=change.new.name.lower()).inc()
            if record:
                await _record_degradation(ctx, change)


def create_app(
    store: EventStore | str | os.PathLike[str],
    *,
    secret: bytes | None = None,
    authority: TokenAuthority | None = None,
    settings: ServerSettings | None = None,
    policy: Policy | None = None,
    record_degradation_events: bool = True,
) -> LighthouseApp:
    """An app serving ``store`` (an open ``EventStore``, or a directory the app opens and closes itself).

    ``secret`` (or a ready ``authority``) is required: there is no default secret.
    """
    if authority is None:
        if secret is None:
            raise ValueError("a secret is required (LIGHTHOUSE_SECRET or --secret-file); there is no default")
        authority = TokenAuthority(secret)
    settings = settings or ServerSettings()
    ctx = ServerContext(authority=authority, settings=settings)
    owns_store = not isinstance(store, EventStore)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        opened = await EventStore.open(store, **settings.store_options) if owns_store else store
        assert isinstance(opened, EventStore)
        ctx.store = opened
        ctx.alerts = AlertEvaluator(settings.alerts, disk_path=opened.path)
        ctx.metrics = ServerMetrics(opened, ctx.alerts, state=ctx.state, stream_subscribers=lambda: len(ctx.streams))
        metrics = ctx.metrics
        ctx.bridge = ValidationBridge(
            opened, policy=policy, settings=settings.bridge,
            on_decision=lambda decision, method: metrics.bridge_decisions.labels(decision=decision, method=method).inc(),
        )
        await ctx.bridge.start()
        evaluator = asyncio.get_running_loop().create_task(_evaluate_alerts(ctx, record_degradation_events))
        try:
            yield
        finally:
            await _shutdown(ctx, evaluator, owns_store)

    app = LighthouseApp(routes=_routes(), lifespan=lifespan, exception_handlers={HTTPException: _http_error},
                        middleware=[Middleware(AccessLog), Middleware(PrincipalAdmission, ctx=ctx)])
    app.front = AppendFront(ctx)
    app.state.ctx = ctx
    app.state.openapi = openapi_document()
    return app


async def _shutdown(ctx: ServerContext, evaluator: asyncio.Task[None], owns_store: bool) -> None:
    """Refuse new writes, let in-flight appends finish, stop streams and the bridge, close the store."""
    ctx.closing = True
    evaluator.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await evaluator
    deadline = time.monotonic() + ctx.settings.shutdown_grace_seconds
    if ctx.inflight_writes:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(ctx.writes_drained.wait(), max(0.0, deadline - time.monotonic()))
    for websocket in list(ctx.streams):
        with contextlib.suppress(Exception):
            await asyncio.wait_for(websocket.close(CLOSE_GOING_AWAY, '{"error":"shutting_down"}'), 1.0)
    if ctx.bridge is not None:
        await ctx.bridge.stop()
    if owns_store and ctx.store is not None:
        await ctx.store.close()
