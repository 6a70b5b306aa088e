"""``/health`` (fast, unauthenticated, for load balancers), ``/health/detailed`` (admin), ``/metrics``,
and the admin view and update of alert thresholds."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from lighthouse.health import HealthState
from lighthouse.server.alerts import AlertConfig
from lighthouse.server.auth import Role
from lighthouse.server.codec import decode_body, read_body, response_codec
from lighthouse.server.context import context_of, endpoint
from lighthouse.server.metrics import CONTENT_TYPE
from lighthouse.server.params import QueryReader
from lighthouse.server.problems import ApiError

__all__ = ["get_alerts", "health", "health_detailed", "metrics", "put_alerts"]


@endpoint("/health")
async def health(request: Request) -> Response:
    """200 while writes are accepted (healthy or degraded), 503 (with Retry-After) otherwise."""
    ctx = context_of(request)
    QueryReader(request.query_params)
    state = ctx.state()
    writable = state in (HealthState.HEALTHY, HealthState.DEGRADED) and not ctx.closing
    body = {"state": state.value, "writable": writable}
    headers = None if writable else ctx.retry_after()
    return response_codec(request).response(body, status=200 if writable else 503, headers=headers)


@endpoint("/health/detailed")
async def health_detailed(request: Request) -> Response:
    ctx = context_of(request)
    ctx.principal(request, Role.ADMIN)
    QueryReader(request.query_params)
    assert ctx.store is not None and ctx.alerts is not None
    state = ctx.state()
    body = {
        "state": state.value,
        "writable": state in (HealthState.HEALTHY, HealthState.DEGRADED) and not ctx.closing,
        "reasons": ctx.reasons(),
        "store": ctx.store.health().to_dict(),
        "alerts": ctx.alerts.snapshot(),
        "stats": ctx.store.stats().to_dict(),
        "server": {"streams": len(ctx.streams), "inflight_writes": ctx.inflight_writes, "closing": ctx.closing},
        "bridge": (
            {**ctx.bridge.projection.summary(), "restored_from_snapshot": ctx.bridge.restored_from_snapshot}
            if ctx.bridge is not None else None
        ),
    }
    return response_codec(request).response(body)


@endpoint("/metrics")
async def metrics(request: Request) -> Response:
    ctx = context_of(request)
    QueryReader(request.query_params)
    assert ctx.metrics is not None
    return Response(ctx.metrics.render(), media_type=CONTENT_TYPE)


@endpoint("/admin/alerts")
async def get_alerts(request: Request) -> Response:
    ctx = context_of(request)
    ctx.principal(request, Role.ADMIN)
    QueryReader(request.query_params)
    assert ctx.alerts is not None
    return response_codec(request).response({"config": ctx.alerts.config.to_dict(), "status": ctx.alerts.snapshot()})


@endpoint("/admin/alerts")
async def put_alerts(request: Request) -> Response:
    """Replace the alert configuration at run time (thresholds, window, dwell)."""
    ctx = context_of(request)
    ctx.principal(request, Role.ADMIN)
    QueryReader(request.query_params)
    body = decode_body(await read_body(request, ctx.settings.max_small_body_bytes), request.headers.get("content-type"))
    try:
        config = AlertConfig.from_dict(body)
    except (ValueError, TypeError) as exc:
        raise ApiError(400, "invalid_alert_config", str(exc)) from None
    assert ctx.alerts is not None
    ctx.alerts.reconfigure(config)
    return response_codec(request).response({"config": config.to_dict(), "status": ctx.alerts.snapshot()})
