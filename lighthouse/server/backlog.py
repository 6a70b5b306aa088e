"""Bytes the server holds for one WebSocket client and has not yet handed to it: its own accounting.

asyncio's back-pressure (``pause_writing`` above the transport's 64 KiB high-water mark) only sees the
transport's user-space buffer. Behind it, the kernel's send queue is autotuned up to ``tcp_wmem``'s
maximum (4 MiB here), so a client that never reads can hold megabytes before a single send waits; on a
busy machine the subscriber's events then trickle in slowly enough that every send finds room and no
send ever waits long enough to time out. Counting what is queued but not acknowledged by the peer
(transport buffer + the socket's unacknowledged bytes, ``SIOCOUTQ``) bounds a subscriber by bytes, the
same on a fast machine and on a slow one.
"""

from __future__ import annotations

import fcntl
import struct
import termios
from collections.abc import Callable, MutableMapping
from typing import Any, Final

__all__ = ["SEND_BACKLOG_EXTENSION", "expose_send_backlog", "send_backlog"]

#: The ASGI scope extension under which the WebSocket protocol publishes its backlog probe.
SEND_BACKLOG_EXTENSION: Final[str] = "lighthouse.send_backlog"
_INT: Final[struct.Struct] = struct.Struct("i")


def _unacknowledged(transport: Any) -> int:
    """Bytes in the socket's send queue the peer has not acknowledged (0 where the kernel cannot say)."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return 0
    try:
        return int(_INT.unpack(fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * _INT.size))[0])
    except (OSError, ValueError):  # closed socket, or not a TCP socket
        return 0


def unsent_bytes(transport: Any) -> int:
    """The transport's buffered bytes plus the socket's unacknowledged ones."""
    if transport.is_closing():
        return 0
    return int(transport.get_write_buffer_size()) + _unacknowledged(transport)


def expose_send_backlog(scope: MutableMapping[str, Any], transport: Any) -> None:
    """Publish the probe for ``transport`` in a WebSocket scope (done by the server's protocol class)."""
    scope.setdefault("extensions", {})[SEND_BACKLOG_EXTENSION] = {"unsent_bytes": lambda: unsent_bytes(transport)}


def send_backlog(scope: MutableMapping[str, Any]) -> Callable[[], int] | None:
    """The probe of this connection, or None when the server did not publish one."""
    extension = (scope.get("extensions") or {}).get(SEND_BACKLOG_EXTENSION)
    return extension.get("unsent_bytes") if isinstance(extension, dict) else None
