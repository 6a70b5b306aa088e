"""``WS /stream``: catch up from a sequence, then follow live appends, filtered.

Messages are JSON text frames (MessagePack binary frames with ``?encoding=msgpack``):
``{"type": "subscribed", "head_sequence": H, "from_sequence": F}`` once, then
``{"type": "event", "event": {...}}`` per event in sequence order. A client resumes after any
disconnect with ``from_sequence = last sequence seen + 1``: no gap, no duplicate.

Memory per client is bounded: the store's subscription buffers at most ``stream_buffer_events``
events, the bytes queued for the client but not yet taken by it stay about ``stream_max_backlog_bytes``
(the socket's send buffer is fixed at that, see ``lighthouse.server.backlog``: autotuned, the kernel
alone holds megabytes before any send waits) and each send may wait at most
``stream_send_timeout_seconds``. A client that falls further behind is closed with code 4408 and the
sequence to resume from, instead of growing the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Final

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from lighthouse.errors import InvalidQuery, LighthouseError, StoreClosed, SubscriberOverflow
from lighthouse.models import EventFilter
from lighthouse.server.auth import AuthError
from lighthouse.server.backlog import send_backlog_limiter
from lighthouse.server.codec import JSON, MSGPACK
from lighthouse.server.context import as_api_error, context_of
from lighthouse.server.params import QueryReader
from lighthouse.server.problems import ApiError
from lighthouse.heap import release_free_memory

__all__ = [
    "CLOSE_BAD_REQUEST",
    "CLOSE_GOING_AWAY",
    "CLOSE_SLOW_CONSUMER",
    "CLOSE_UNAUTHORIZED",
    "stream",
]

CLOSE_GOING_AWAY: Final[int] = 1001
CLOSE_INTERNAL: Final[int] = 1011
CLOSE_BAD_REQUEST: Final[int] = 4400
CLOSE_UNAUTHORIZED: Final[int] = 4401
CLOSE_SLOW_CONSUMER: Final[int] = 4408
CLOSE_UNAVAILABLE: Final[int] = 4503


def _reason(payload: dict[str, object]) -> str:
    text = json.dumps(payload, separators=(",", ":"))
    return text if len(text.encode()) <= 120 else json.dumps({"error": payload.get("error")})


async def _refuse(websocket: WebSocket, error: ApiError, close_code: int) -> None:
    """Refuse the handshake with an HTTP error body when the server supports it, else close."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(JSON.response(error.body(), status=error.status, headers=error.headers))
    else:
        await websocket.close(close_code, _reason({"error": error.code}))


async def stream(websocket: WebSocket) -> None:
    ctx = context_of(websocket)
    try:
        ctx.principal(websocket)  # type: ignore[arg-type]  # any authenticated agent may read the log
        reader = QueryReader(
            websocket.query_params,
            lists=("event_types", "aggregate_ids", "source_agents"),
            scalars=("from_sequence", "correlation_id", "causation_id", "encoding"),
        )
        event_filter = EventFilter(
            event_types=reader.strings("event_types"),  # type: ignore[arg-type]
            aggregate_ids=reader.strings("aggregate_ids", max_length=256),  # type: ignore[arg-type]
            source_agents=reader.strings("source_agents", max_length=256),  # type: ignore[arg-type]
            correlation_id=reader.string("correlation_id"),
            causation_id=reader.string("causation_id"),
        )
        from_sequence = reader.integer("from_sequence", minimum=0)
        codec = MSGPACK if reader.choice("encoding", ("json", "msgpack"), "json") == "msgpack" else JSON
        if ctx.closing:
            raise ApiError(503, "shutting_down", "the server is shutting down", retryable=True)
        lingering = ctx.connections.websockets() - 1 if ctx.connections is not None else 0  # less this one
        subscribers = max(len(ctx.streams), lingering)
        if subscribers >= ctx.settings.max_stream_subscribers:
            raise ApiError(503, "too_many_subscribers",
                           f"the server already streams to {subscribers} subscribers; retry later",
                           retryable=True, headers=ctx.retry_after())
    except (AuthError, ApiError, InvalidQuery) as exc:
        error = as_api_error(exc, ctx)
        if ctx.metrics is not None:
            ctx.metrics.count_error(error.code)
        await _refuse(websocket, error, CLOSE_UNAUTHORIZED if isinstance(exc, AuthError) else CLOSE_BAD_REQUEST)
        return
    assert ctx.store is not None and ctx.metrics is not None
    await websocket.accept()
    ctx.streams.add(websocket)
    if from_sequence is None:
        from_sequence = ctx.store.head_sequence + 1  # "only new events", pinned before anything is sent
    subscription = ctx.store.subscribe(
        event_filter, from_sequence=from_sequence, buffer_size=ctx.settings.stream_buffer_events
    )
    sender = asyncio.current_task()
    watcher = asyncio.get_running_loop().create_task(_watch_client(websocket, sender))
    close_code, close_reason = 1000, ""
    limit_send_buffer = send_backlog_limiter(websocket.scope)
    if limit_send_buffer is not None:
        limit_send_buffer(ctx.settings.stream_max_backlog_bytes)
    timeout = ctx.settings.stream_send_timeout_seconds
    try:
        await _send(websocket, codec, {
            "type": "subscribed",
            "head_sequence": ctx.store.head_sequence,
            "from_sequence": from_sequence,
        }, timeout)
        async for event in subscription:
            await _send(websocket, codec, {"type": "event", "event": event.to_dict()}, timeout)
            ctx.metrics.stream_events.inc()
        close_code, close_reason = CLOSE_GOING_AWAY, _reason({"error": "store_closed"})
    except SubscriberOverflow:
        close_code = CLOSE_SLOW_CONSUMER
        close_reason = _reason({"error": "slow_consumer", "resume_from": subscription.last_sequence + 1})
        ctx.metrics.stream_closed.labels(reason="slow_consumer").inc()
    except asyncio.TimeoutError:
        close_code = CLOSE_SLOW_CONSUMER
        close_reason = _reason({"error": "send_timeout", "resume_from": subscription.last_sequence})
        ctx.metrics.stream_closed.labels(reason="send_timeout").inc()
    except (WebSocketDisconnect, asyncio.CancelledError, ConnectionError, RuntimeError):
        close_code = 0  # the client left (or the server is stopping): nothing to send
        ctx.metrics.stream_closed.labels(reason="client_left").inc()
    except StoreClosed:
        close_code, close_reason = CLOSE_GOING_AWAY, _reason({"error": "store_closed"})
    except LighthouseError as exc:
        close_code, close_reason = CLOSE_UNAVAILABLE, _reason({"error": exc.code})
    finally:
        watcher.cancel()
        with contextlib.suppress(BaseException):
            await watcher
        await subscription.aclose()
        ctx.streams.discard(websocket)
        if not ctx.streams:
            release_free_memory()  # the last subscriber left: give its buffers back to the OS now
    if close_code and websocket.application_state == WebSocketState.CONNECTED:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(websocket.close(close_code, close_reason), ctx.settings.stream_send_timeout_seconds)


async def _send(websocket: WebSocket, codec: object, message: dict[str, object], timeout: float) -> None:
    data = codec.encode(message)  # type: ignore[attr-defined]
    if codec is MSGPACK:
        await asyncio.wait_for(websocket.send_bytes(data), timeout)
    else:
        await asyncio.wait_for(websocket.send_text(data.decode()), timeout)


async def _watch_client(websocket: WebSocket, sender: asyncio.Task[object] | None) -> None:
    """Read (and ignore) client messages so a disconnect is noticed even while no events flow."""
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
    except Exception:  # noqa: BLE001 - any failure to read means the client is gone
        pass
    if sender is not None and not sender.done():
        sender.cancel()
