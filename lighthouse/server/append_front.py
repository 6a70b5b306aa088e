"""The lean path for ``POST /events`` and ``POST /events/batch``: the requests that carry the write load.

Appends are most of the server's traffic, and Starlette's generic machinery (its middleware stack, the
router scan, ``Request`` and ``Response`` objects, header multi-dicts, a ``send`` wrapper per layer)
costs more per request than the append itself. The app hands these two routes to ``AppendFront``
before its middleware stack runs, and ``AppendFront`` does in one pass what the layers would have done:
the access line, the per-principal admission gate (the same ``InflightBudget`` the middleware uses),
one token check, then the same handlers' logic (``append_one``/``append_many``) with the same body
limits, codecs, error bodies, headers and metrics; a JSON event or batch of common events is decoded
straight into typed fields (``quick_single``, ``quick_batch``). Anything unusual (a query string, another
method or path) goes through the middleware stack and the router.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Final

from lighthouse.server.access_log import access_logged, log_access
from lighthouse.server.admission import too_many_requests
from lighthouse.server.answers import batch_answer, event_answer
from lighthouse.server.auth import AuthError, Principal, Role
from lighthouse.server.codec import JSON, MSGPACK, Codec, codec_for, decode_body, is_json, receive_body
from lighthouse.server.context import ServerContext, as_api_error
from lighthouse.server.event_intake import quick_batch, quick_single
from lighthouse.server.routes.events import append_built, append_built_one, append_many, append_one

__all__ = ["AppendFront"]

_ROUTES: Final[frozenset[str]] = frozenset({"/events", "/events/batch"})
_WANTED: Final[frozenset[bytes]] = frozenset({b"authorization", b"content-type", b"content-length", b"accept"})
_MEDIA_TYPES: Final[dict[str, bytes]] = {codec.media_type: codec.media_type.encode() for codec in (JSON, MSGPACK)}


def _headers(scope: dict[str, Any]) -> dict[bytes, str]:
    """The few request headers the append path reads; the first occurrence wins, as in Starlette."""
    out: dict[bytes, str] = {}
    for name, value in scope["headers"]:
        if name in _WANTED and name not in out:
            out[name] = value.decode("latin-1")
    return out


class AppendFront:
    """Answers appends without Starlette's per-request objects and layers (see the module doc)."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self._labels: dict[tuple[str, int], tuple[str, str, str]] = {}  # (route, status) -> the request count's labels

    def takes(self, scope: dict[str, Any]) -> bool:
        """Whether this request is a plain append the lean path answers (the app started, no query string)."""
        return (scope["type"] == "http" and scope["path"] in _ROUTES and scope["method"] == "POST"
                and not scope.get("query_string") and self.ctx.metrics is not None and self.ctx.store is not None)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        started = time.perf_counter()
        route: str = scope["path"]
        status = 500
        principal: Principal | None = None
        agent: str | None = None  # set once admitted: its in-flight count is held until the answer is sent
        try:
            headers = _headers(scope)
            refusal: AuthError | None = None
            try:
                principal = self.ctx.authority.authenticate(headers.get(b"authorization"))
            except AuthError as exc:  # no principal, so no budget to count against: answered 401 below
                refusal = exc
            if principal is not None:
                refused_at = self.ctx.admission.enter(principal.agent_id)
                if refused_at is not None:
                    status = 429
                    await too_many_requests(send, self.ctx.settings.retry_after_seconds, refused_at)
                    return
                agent = principal.agent_id
            codec, body, status, extra = await self._answer(route, principal, refusal, headers, receive)
            await _respond(send, codec, body, status, extra, started)  # the status is logged even if sending fails
        finally:
            if agent is not None:
                self.ctx.admission.leave(agent)
            if access_logged():
                log_access("POST", route, status, principal.agent_id if principal is not None else "-", started)

    async def _answer(self, route: str, principal: Principal | None, refusal: AuthError | None,
                      headers: dict[bytes, str], receive: Any) -> tuple[Codec, bytes, int, dict[str, str]]:
        """The answer to send: its codec, body, status and extra headers (counted in the metrics already)."""
        codec = codec_for(headers.get(b"accept"), headers.get(b"content-type"))
        extra: dict[str, str] = {}
        try:
            if principal is None:
                assert refusal is not None
                raise refusal
            body, status, extra = await self._append(route, self.ctx.accept(principal), headers, receive, codec)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every error becomes its JSON answer, as in context.endpoint
            error = as_api_error(exc, self.ctx)
            assert self.ctx.metrics is not None
            self.ctx.metrics.count_error(error.code)
            body, status, extra = codec.encode(error.body()), error.status, error.headers
        self._count(route, status)
        return codec, body, status, extra

    async def _append(self, route: str, principal: Principal, headers: dict[bytes, str], receive: Any,
                      codec: Codec) -> tuple[bytes, int, dict[str, str]]:
        ctx = self.ctx
        single = route == "/events"
        limit = ctx.settings.max_event_body_bytes if single else ctx.settings.max_batch_body_bytes
        content_type = headers.get(b"content-type")
        raw = await receive_body(receive, headers.get(b"content-length"), limit)
        if is_json(content_type):
            bridge_types = principal.role.includes(Role.ADMIN)
            if single:
                event = quick_single(raw, principal.agent_id, bridge_types=bridge_types)
                if event is not None:
                    stored, status, extra = await append_built_one(ctx, event, None)
                    return event_answer(codec, stored), status, extra
            else:
                built = quick_batch(raw, principal.agent_id, bridge_types=bridge_types)
                if built is not None:
                    events, status = await append_built(ctx, *built)
                    return batch_answer(codec, events), status, {}
        body = decode_body(raw, content_type)
        if single:
            event, status, extra = await append_one(ctx, principal, body, None)
            return event_answer(codec, event), status, extra
        events, status = await append_many(ctx, principal, body)
        return batch_answer(codec, events), status, {}

    def _count(self, route: str, status: int) -> None:
        labels = self._labels.get((route, status))
        if labels is None:
            labels = self._labels[(route, status)] = ("POST", route, str(status))
        assert self.ctx.metrics is not None
        self.ctx.metrics.requests.add(labels)


async def _respond(send: Any, codec: Codec, body: bytes, status: int, extra: dict[str, str], started: float) -> None:
    media_type = _MEDIA_TYPES.get(codec.media_type) or codec.media_type.encode()
    raw = [(b"content-length", b"%d" % len(body)), (b"content-type", media_type)]
    for name, text in extra.items():
        raw.append((name.lower().encode("latin-1"), text.encode("latin-1")))
    elapsed = f"{(time.perf_counter() - started) * 1000:.3f}".encode()
    raw.append((b"x-response-time-ms", elapsed))
    raw.append((b"server-timing", b"app;dur=" + elapsed))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
