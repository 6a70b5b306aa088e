"""Connection-level limits uvicorn does not enforce by itself: what Kestrel and nginx hold against slow clients.

uvicorn never times out a request whose headers trickle in, never times out a body sent a byte at a
time, accepts any number of connections, accepts any header block that arrives in one read, and drains
a refused body to its end before it closes. ``guard_protocols`` wraps uvicorn's HTTP protocol class
(h11 or httptools: both keep the same ``cycle`` object, which is all the guard reads) and its
WebSocket protocol class in subclasses that enforce:

- a request-header deadline (from the connection's or the request's first byte),
- a minimum body data rate after a grace period (time the app is not reading does not count),
- a cap on connections: at the cap, the oldest connection still sending its headers (or idle) is
  dropped to admit the new one, so slow clients cannot crowd out good ones; with nothing to drop the
  new one gets a 503. The cap is also kept below the descriptor limit, so ``accept()`` keeps working,
- header block size and line count, counted on the raw bytes however they are split into reads,
- a bounded drain of a body the app refused without reading (a 401 never reads 1 GiB),
- WebSocket writers that cannot write (the client does not read): aborted once the close handshake
  or the write buffer stays stuck for a deadline, and 1001 with a reason on shutdown (not 1012).

One sweep per second per server judges the deadlines; no timer per connection. Accept failures from
descriptor exhaustion are logged once per interval with a count, not as a traceback per attempt.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any, Final

from lighthouse.server.backlog import expose_send_backlog
from lighthouse.server.coalescing import CoalescingTransport
from lighthouse.heap import release_free_memory

__all__ = ["ConnectionLimits", "ConnectionRegistry", "guard_protocols", "throttle_accept_errors"]

_log = logging.getLogger("lighthouse.server.limits")

_HEADERS_END: Final[bytes] = b"\r\n\r\n"
_SWEEP_SECONDS: Final[float] = 1.0
_DESCRIPTOR_RESERVE: Final[int] = 96  # store segments, the lock, logs, the bridge: never handed to clients
_ACCEPT_ERROR: Final[str] = "socket.accept() out of system resource"

# Connection phases, as far as the limits care.
_HEADERS: Final[str] = "headers"  # waiting for (the rest of) a request head
_IDLE: Final[str] = "idle"  # keep-alive, between requests, no byte of the next one yet
_BODY: Final[str] = "body"  # the app is running and the body is still arriving
_APP: Final[str] = "app"  # the whole request is in; the app is working or answering
_DRAIN: Final[str] = "drain"  # answered without reading the whole body: a bounded drain, then close
_WEBSOCKET: Final[str] = "websocket"


def _response(status: int, reason: str) -> bytes:
    """A complete HTTP/1.1 answer in the API's error shape, written straight to the transport."""
    message = reason.replace("_", " ")
    body = ('{"error":"%s","message":"%s","retryable":%s,"details":{}}'
            % (reason, message, "true" if status in (408, 503) else "false")).encode()
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
        % (status, message.encode(), len(body))
    ) + body


def _reset(transport: Any) -> None:
    """Abort with a TCP reset: a plain close would leave the unsent bytes (and the connection) to the
    kernel, which keeps offering them to a peer that never reads for minutes."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    transport.abort()


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """The limits, with defaults close to Kestrel's and nginx's."""

    header_timeout_seconds: float = 10.0
    keep_alive_timeout_seconds: float = 5.0
    min_body_rate_bytes_per_second: float = 240.0
    body_rate_grace_seconds: float = 5.0
    max_connections: int = 2000
    max_header_bytes: int = 32 * 1024
    max_request_line_bytes: int = 64 * 1024
    max_header_count: int = 100
    #: A body answered without being read (413, 401) is read and discarded up to this much before the close, as
    #: nginx's lingering close does: a client that uploads before it reads (httpx, curl) then sees the answer
    #: instead of a reset that can destroy it in its receive queue; a 1 GiB upload is still cut off early.
    refused_body_drain_bytes: int = 8 * 1024 * 1024
    refused_body_drain_seconds: float = 2.0
    websocket_close_timeout_seconds: float = 5.0
    websocket_stuck_seconds: float = 15.0

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{name} must be a positive number")

    def effective_max_connections(self) -> int:
        """The configured cap, lowered to leave descriptors for the store under a low RLIMIT_NOFILE."""
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return self.max_connections
        return max(8, min(self.max_connections, soft - _DESCRIPTOR_RESERVE))


@dataclass(slots=True)
class ConnectionRegistry:
    """Every guarded connection of one server, oldest first, and the sweep that enforces deadlines."""

    limits: ConnectionLimits
    connections: dict[Any, None] = field(default_factory=dict)
    cap: int = 0
    evicted: int = 0
    refused: int = 0
    timed_out: int = 0
    _sweeper: asyncio.TimerHandle | None = None
    _trim_pending: bool = False

    def __post_init__(self) -> None:
        self.cap = self.limits.effective_max_connections()

    def admit(self, guard: Any) -> bool:
        """Register ``guard``; at the cap drop the oldest connection that is idle or still sending headers."""
        if len(self.connections) >= self.cap:
            victim = next((c for c in self.connections if c._lh_phase in (_HEADERS, _IDLE)), None)
            if victim is None:
                self.refused += 1
                return False
            self.evicted += 1
            victim._lh_close(None)
        self.connections[guard] = None
        if self._sweeper is None:
            self._schedule()
        return True

    def discard(self, guard: Any) -> None:
        self.connections.pop(guard, None)

    def _schedule(self) -> None:
        self._sweeper = asyncio.get_running_loop().call_later(_SWEEP_SECONDS, self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        now = time.monotonic()
        if self._trim_pending:
            # The previous sweep aborted stuck WebSocket writers: their buffers are freed by now, but glibc
            # keeps large freed blocks in the heap unless asked to return them.
            self._trim_pending = False
            release_free_memory()
        for guard in list(self.connections):
            if guard._lh_expired(now):
                self.timed_out += 1
                self._trim_pending = self._trim_pending or guard._lh_phase == _WEBSOCKET
        if self.connections or self._trim_pending:
            self._schedule()

    def websockets(self) -> int:
        """Open WebSocket connections, including those whose handler has ended but whose socket lingers."""
        return sum(1 for c in self.connections if c._lh_phase == _WEBSOCKET)

    def stats(self) -> dict[str, int]:
        return {"open": len(self.connections), "cap": self.cap, "evicted": self.evicted,
                "refused": self.refused, "timed_out": self.timed_out}


class _HttpGuard:
    """Mixin over uvicorn's H11Protocol or HttpToolsProtocol; reads only what both share."""

    _lh_registry: ConnectionRegistry
    transport: Any
    cycle: Any
    flow: Any

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self.transport = CoalescingTransport(transport)  # the request cycles write through it
        self._lh_since = time.monotonic()
        self._lh_phase = _HEADERS
        self._lh_cycle: Any = None
        self._lh_header_bytes = 0
        self._lh_header_lines = 0
        self._lh_line_bytes: int | None = None
        self._lh_tail = b""
        self._lh_head_done = False
        self._lh_body_bytes = 0
        self._lh_drained = 0
        if not self._lh_registry.admit(self):
            self._lh_close(_response(503, "too_many_connections"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._lh_registry.discard(self)
        super().connection_lost(exc)  # type: ignore[misc]

    def _lh_close(self, reply: bytes | None) -> None:
        self._lh_registry.discard(self)
        if self.transport.is_closing():
            _reset(self.transport)
            return
        if reply is not None:
            self.transport.write(reply)
            self.transport.close()
        else:
            _reset(self.transport)

    def _lh_start_request(self, now: float) -> None:
        self._lh_phase, self._lh_since = _HEADERS, now
        self._lh_header_bytes = self._lh_header_lines = 0
        self._lh_line_bytes = None
        self._lh_tail, self._lh_head_done = b"", False

    def _lh_count_head(self, data: bytes) -> bool:
        """Count header bytes and lines up to the blank line; False (and a 431/414 sent) when over a limit.

        The request line has its own (larger) cap: a long query string is a URI matter, not a header one.
        """
        joined = self._lh_tail + data
        end = joined.find(_HEADERS_END)
        head = joined if end < 0 else joined[: end + 2]
        fresh = head[len(self._lh_tail):] if len(head) >= len(self._lh_tail) else b""
        if self._lh_line_bytes is None:
            newline = fresh.find(b"\n")
            if newline >= 0:
                self._lh_line_bytes = self._lh_header_bytes + newline + 1
        self._lh_header_bytes += len(fresh)
        self._lh_header_lines += fresh.count(b"\n")
        self._lh_tail = joined[-3:]
        limits = self._lh_registry.limits
        line = self._lh_line_bytes if self._lh_line_bytes is not None else self._lh_header_bytes
        if line > limits.max_request_line_bytes:
            self._lh_close(_response(414, "uri_too_long"))
            return False
        if self._lh_header_bytes - line > limits.max_header_bytes or self._lh_header_lines > limits.max_header_count + 1:
            self._lh_close(_response(431, "request_header_fields_too_large"))
            return False
        if end >= 0:
            self._lh_head_done = True
        return True

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        if self._lh_phase == _IDLE:
            self._lh_start_request(now)
        if self._lh_phase == _DRAIN:
            self._lh_drained += len(data)
            if self._lh_drained > self._lh_registry.limits.refused_body_drain_bytes:
                self._lh_close(None)
                return
        elif self._lh_phase == _HEADERS and not self._lh_head_done and not self._lh_count_head(data):
            return
        elif self._lh_phase == _BODY:
            self._lh_body_bytes += len(data)
        super().data_received(data)  # type: ignore[misc]
        self._lh_follow(now)

    def _lh_follow(self, now: float) -> None:
        """Move to the phase the protocol's current request/response cycle shows."""
        cycle = self.cycle
        if cycle is None or self._lh_phase in (_DRAIN, _WEBSOCKET) or self.transport.is_closing():
            return
        if cycle is not self._lh_cycle:  # a new request's head is complete
            self._lh_cycle = cycle
            self._lh_phase, self._lh_since, self._lh_body_bytes = (_BODY if cycle.more_body else _APP), now, 0
        elif self._lh_phase == _BODY and not cycle.more_body:
            self._lh_phase = _APP

    def on_response_complete(self) -> None:
        self.transport.flush()  # the whole answer leaves now, in one send
        body_pending = self.cycle is not None and self.cycle.more_body and not self.cycle.disconnected
        super().on_response_complete()  # type: ignore[misc]
        now = time.monotonic()
        if self.transport.is_closing():
            return
        if body_pending:
            # Answered (401, 413, ...) without reading the body: drain a little, so the client sees
            # the answer rather than a reset, then close instead of reading gigabytes to reuse it.
            self._lh_phase, self._lh_since, self._lh_drained = _DRAIN, now, 0
            self.transport.resume_reading()
        elif self.cycle is not None and self.cycle is not self._lh_cycle:
            self._lh_follow(now)  # a pipelined request started inside the call above
        else:
            self._lh_phase, self._lh_since = _IDLE, now

    def handle_websocket_upgrade(self, *args: Any) -> None:
        self._lh_phase = _WEBSOCKET
        self._lh_registry.discard(self)  # the WebSocket protocol registers itself
        self.transport.flush()
        self.transport = self.transport.wrapped  # the WebSocket protocol writes for itself
        super().handle_websocket_upgrade(*args)  # type: ignore[misc]

    def shutdown(self) -> None:
        """Server stopping: a request still sending its head or body will not finish in time: close it now
        (idle connections, and ones that sent nothing yet, get uvicorn's ordinary graceful close)."""
        if self._lh_phase in (_BODY, _DRAIN):
            self._lh_close(None)
            return
        if self._lh_phase == _HEADERS and self._lh_header_bytes:
            self._lh_close(_response(503, "shutting_down"))
            return
        super().shutdown()  # type: ignore[misc]

    def _lh_expired(self, now: float) -> bool:
        limits = self._lh_registry.limits
        age = now - self._lh_since
        phase = self._lh_phase
        if phase == _HEADERS and age > limits.header_timeout_seconds:
            self._lh_close(_response(408, "request_timeout") if self._lh_header_bytes else None)
            return True
        if phase == _IDLE and age > limits.keep_alive_timeout_seconds + _SWEEP_SECONDS:
            self._lh_close(None)
            return True
        if phase == _DRAIN and age > limits.refused_body_drain_seconds:
            self._lh_close(None)
            return True
        if phase == _BODY:
            if self.flow is not None and self.flow.read_paused:
                # The app is not reading: the client is not to blame for the time this takes.
                self._lh_since, self._lh_body_bytes = now, 0
                return False
            if age > limits.body_rate_grace_seconds and self._lh_body_bytes < limits.min_body_rate_bytes_per_second * age:
                self._lh_close(None)
                return True
            if age > limits.body_rate_grace_seconds * 4:  # judge the recent rate, not the average since the start
                self._lh_since, self._lh_body_bytes = now - limits.body_rate_grace_seconds, int(
                    limits.min_body_rate_bytes_per_second * limits.body_rate_grace_seconds
                )
        return False


class _WebSocketGuard:
    """Mixin over uvicorn's WebSocketsSansIOProtocol: a writer that cannot write is aborted, not kept."""

    _lh_registry: ConnectionRegistry
    transport: Any
    loop: asyncio.AbstractEventLoop
    conn: Any
    close_sent: bool
    handshake_complete: bool

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._lh_phase = _WEBSOCKET
        self._lh_since = time.monotonic()
        self._lh_stuck_since: float | None = None
        self._lh_close_deadline: float | None = None
        self._lh_registry.connections[self] = None  # counted, never evicted: the app caps subscribers
        if self._lh_registry._sweeper is None:
            self._lh_registry._schedule()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lh_registry.discard(self)
        super().connection_lost(exc)  # type: ignore[misc]

    def _lh_close(self, reply: bytes | None) -> None:
        self._lh_registry.discard(self)
        _reset(self.transport)

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)  # type: ignore[misc]
        scope = getattr(self, "scope", None)
        if scope is not None:  # accepted: the app bounds its send buffer (lighthouse.server.backlog)
            expose_send_backlog(scope, self.transport)

    def pause_writing(self) -> None:
        self._lh_stuck_since = time.monotonic()
        super().pause_writing()  # type: ignore[misc]

    def resume_writing(self) -> None:
        self._lh_stuck_since = None
        super().resume_writing()  # type: ignore[misc]

    async def send(self, message: Any) -> None:
        if message.get("type") == "websocket.close" and self._lh_close_deadline is None:
            # Armed before the send: against a full buffer the close frame itself may never be written.
            self._lh_close_deadline = time.monotonic() + self._lh_registry.limits.websocket_close_timeout_seconds
        await super().send(message)  # type: ignore[misc]
        if message.get("type") == "websocket.http.response.body" and not message.get("more_body", False):
            # A denial response completes the handshake (uvicorn forgets to say so, then logs an ERROR).
            self.handshake_complete = True

    def shutdown(self) -> None:
        """1001 "going away" with a reason (uvicorn sends 1012 without one), then a bounded close."""
        if self.handshake_complete and not self.close_sent and not self.transport.is_closing():
            self.queue.put_nowait({"type": "websocket.disconnect", "code": 1001})  # type: ignore[attr-defined]
            self.conn.send_close(1001, '{"error":"shutting_down"}')
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.close_sent = True
            self._lh_close_deadline = time.monotonic() + min(1.0, self._lh_registry.limits.websocket_close_timeout_seconds)
            self.transport.close()
            return
        super().shutdown()  # type: ignore[misc]

    def _lh_expired(self, now: float) -> bool:
        limits = self._lh_registry.limits
        stuck = self._lh_stuck_since is not None and now - self._lh_stuck_since > limits.websocket_stuck_seconds
        unclosed = self._lh_close_deadline is not None and now > self._lh_close_deadline
        if stuck or unclosed:
            self._lh_close(None)
            return True
        return False


def guard_protocols(http_class: type, ws_class: type | None, limits: ConnectionLimits) -> tuple[type, type | None, ConnectionRegistry]:
    """Subclasses of uvicorn's protocol classes that enforce ``limits``, and the registry they share."""
    registry = ConnectionRegistry(limits)
    http = type(f"Guarded{http_class.__name__}", (_HttpGuard, http_class), {"_lh_registry": registry})
    ws = None
    if ws_class is not None:
        ws = type(f"Guarded{ws_class.__name__}", (_WebSocketGuard, ws_class), {"_lh_registry": registry})
    return http, ws, registry


def throttle_accept_errors(loop: asyncio.AbstractEventLoop, interval_seconds: float = 10.0) -> None:
    """Log descriptor exhaustion at accept() once per interval with a count, not a traceback per attempt."""
    previous = loop.get_exception_handler()
    state = {"count": 0, "logged_at": -interval_seconds}

    def handler(the_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") != _ACCEPT_ERROR:
            if previous is not None:
                previous(the_loop, context)
            else:
                the_loop.default_exception_handler(context)
            return
        state["count"] += 1
        now = time.monotonic()
        if now - state["logged_at"] >= interval_seconds:
            exc = context.get("exception")
            _log.warning("accept() failing (%s): %d failure(s) since the last report; serving open connections",
                         getattr(exc, "strerror", None) or exc, state["count"])
            state["count"], state["logged_at"] = 0, now

    loop.set_exception_handler(handler)
