"""The lean path for ``POST /events`` and ``POST /events/batch``: the requests that carry the write load.

Appends are most of the server's traffic, and Starlette's generic machinery (router scan, exception
middleware, ``Request`` and ``Response`` objects, header multi-dicts) costs more per request than the
append itself. This middleware sits inside the access log and the per-principal admission gate (so
both still see every request) and answers the two append routes straight from the ASGI messages, with
the same handlers' logic (``append_one``/``append_many``), the same body limits, codecs, error bodies,
headers and metrics. Anything unusual (a query string, another method or path) goes on to the router.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Final

from lighthouse.server.answers import batch_answer, event_answer
from lighthouse.server.codec import Codec, codec_for, decode_body, receive_body
from lighthouse.server.context import ServerContext, as_api_error
from lighthouse.server.routes.events import append_many, append_one

__all__ = ["AppendFront"]

_ROUTES: Final[dict[str, str]] = {"/events": "/events", "/events/batch": "/events/batch"}
_WANTED: Final[frozenset[bytes]] = frozenset({b"authorization", b"content-type", b"content-length", b"accept"})


def _headers(scope: dict[str, Any]) -> dict[bytes, str]:
    """The few request headers the append path reads; the first occurrence wins, as in Starlette."""
    out: dict[bytes, str] = {}
    for name, value in scope["headers"]:
        if name in _WANTED and name not in out:
            out[name] = value.decode("latin-1")
    return out


class AppendFront:
    """ASGI middleware answering appends without Starlette's per-request objects (see the module doc)."""

    def __init__(self, app: Any, ctx: ServerContext) -> None:
        self.app = app
        self.ctx = ctx
        self._requests: dict[tuple[str, int], Any] = {}  # (route, status) -> the counter's child

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        route = _ROUTES.get(scope.get("path", "")) if scope["type"] == "http" else None
        if (route is None or scope["method"] != "POST" or scope.get("query_string")
                or self.ctx.metrics is None or self.ctx.store is None):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = _headers(scope)
        codec = codec_for(headers.get(b"accept"), headers.get(b"content-type"))
        extra: dict[str, str] = {}
        try:
            body, status, extra = await self._append(route, headers, receive, codec)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every error becomes its JSON answer, as in context.endpoint
            error = as_api_error(exc, self.ctx)
            assert self.ctx.metrics is not None
            self.ctx.metrics.count_error(error.code)
            body, status, extra = codec.encode(error.body()), error.status, error.headers
        self._count(route, status)
        await _respond(send, codec, body, status, extra, started)

    async def _append(self, route: str, headers: dict[bytes, str], receive: Any,
                      codec: Codec) -> tuple[bytes, int, dict[str, str]]:
        ctx = self.ctx
        principal = ctx.authenticate(headers.get(b"authorization"))
        single = route == "/events"
        limit = ctx.settings.max_event_body_bytes if single else ctx.settings.max_batch_body_bytes
        body = decode_body(await receive_body(receive, headers.get(b"content-length"), limit),
                           headers.get(b"content-type"))
        if single:
            event, status, extra = await append_one(ctx, principal, body, None)
            return event_answer(codec, event), status, extra
        events, status = await append_many(ctx, principal, body)
        return batch_answer(codec, events), status, {}

    def _count(self, route: str, status: int) -> None:
        child = self._requests.get((route, status))
        if child is None:
            assert self.ctx.metrics is not None
            child = self._requests[(route, status)] = self.ctx.metrics.requests.labels(
                method="POST", route=route, status=str(status))
        child.inc()


async def _respond(send: Any, codec: Codec, body: bytes, status: int, extra: dict[str, str], started: float) -> None:
    raw = [(b"content-length", str(len(body)).encode()), (b"content-type", codec.media_type.encode())]
    raw.extend((name.lower().encode("latin-1"), text.encode("latin-1")) for name, text in extra.items())
    raw.append((b"x-response-time-ms", f"{(time.perf_counter() - started) * 1000:.3f}".encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
