"""Bound the bytes the server holds for one WebSocket client, so that a client that does not read blocks.

asyncio's back-pressure (``pause_writing`` above the transport's 64 KiB high-water mark, which uvicorn
turns into a send that waits) only starts once the kernel's send queue is full, and Linux autotunes that
queue up to ``tcp_wmem``'s maximum (4 MiB here). A client that never reads can so hold megabytes before
a single send waits, and whether the server ever notices then depends on how fast events arrive compared
with how fast it sends them (CPU speed), not on the client. Fixing the socket's send buffer at the
subscriber's allowance makes the bytes held for it (transport buffer + unacknowledged socket bytes)
bounded by the server's own setting: past it every send waits, and a send that waits longer than the
stream's send timeout closes the client with 4408.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, MutableMapping
from typing import Any, Final

__all__ = ["SEND_BACKLOG_EXTENSION", "expose_send_backlog", "send_backlog_limiter"]

#: The ASGI scope extension under which the WebSocket protocol publishes how to bound its send buffer.
SEND_BACKLOG_EXTENSION: Final[str] = "lighthouse.send_backlog"


def _limit_send_buffer(transport: Any, max_bytes: int) -> None:
    """Fix the socket's send buffer (Linux doubles the value for its bookkeeping and stops autotuning)."""
    sock = transport.get_extra_info("socket")
    if sock is not None and not transport.is_closing():
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, max(4096, max_bytes // 2))
        transport.set_write_buffer_limits(high=min(64 * 1024, max_bytes // 4))


def expose_send_backlog(scope: MutableMapping[str, Any], transport: Any) -> None:
    """Publish the limiter for ``transport`` in a WebSocket scope (done by the server's protocol class)."""
    scope.setdefault("extensions", {})[SEND_BACKLOG_EXTENSION] = {
        "limit": lambda max_bytes: _limit_send_buffer(transport, max_bytes)}


def send_backlog_limiter(scope: MutableMapping[str, Any]) -> Callable[[int], None] | None:
    """The limiter of this connection, or None when the server did not publish one."""
    extension = (scope.get("extensions") or {}).get(SEND_BACKLOG_EXTENSION)
    return extension.get("limit") if isinstance(extension, dict) else None
