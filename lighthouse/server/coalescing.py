"""One ``send`` per HTTP answer: the writes of one response leave the server together.

uvicorn writes a response's head and its body with two ``transport.write`` calls (the ASGI messages
arrive separately), and an idle uvloop or asyncio transport sends each at once: two system calls, two
TCP segments, and a client that wakes up twice for a small answer (the HTTP benchmark's clients spent a
fifth to a third less CPU per request once both parts left in one segment). ``CoalescingTransport``
holds what is written until the protocol says the response is complete, or until the loop runs its next
callbacks, whichever comes first, so a streamed body still flows and nothing waits for more than one loop
turn; what is held never exceeds ``FLUSH_AT_BYTES`` plus one write, so the transport's flow control still
paces a large body.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["FLUSH_AT_BYTES", "CoalescingTransport"]

#: Held bytes that are sent at once: a streamed body written in one loop turn (a page whose generator never
#: waits) reaches the transport, and its flow control (``pause_writing`` at 64 KiB), in steps of this size
#: instead of all at the end of the turn.
FLUSH_AT_BYTES = 64 * 1024


class CoalescingTransport:
    """A transport that joins the writes made within one loop turn into one write of ``transport``.

    Everything but ``write`` and ``close`` goes to the wrapped transport; ``close`` sends what is held
    first (as a plain close sends what is buffered). ``abort`` drops it, as the kernel's buffer is dropped.
    """

    __slots__ = ("_held", "_held_bytes", "_transport")

    def __init__(self, transport: asyncio.WriteTransport) -> None:
        self._transport = transport
        self._held: list[bytes] | None = None
        self._held_bytes = 0

    @property
    def wrapped(self) -> asyncio.WriteTransport:
        return self._transport

    def write(self, data: bytes) -> None:
        if self._held is None:
            self._held = [data]
            self._held_bytes = len(data)
            asyncio.get_running_loop().call_soon(self.flush)
        else:
            self._held.append(data)
            self._held_bytes += len(data)
        if self._held_bytes >= FLUSH_AT_BYTES:
            self.flush()

    def flush(self) -> None:
        """Send what is held, as one write (nothing when the connection is closing: it is being dropped)."""
        held, self._held = self._held, None
        if held and not self._transport.is_closing():
            self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    # The calls made for every request (uvicorn's protocol and ``limits`` ask ``is_closing`` three or four
    # times per answer) are forwarded directly: through ``__getattr__`` each costs a failed attribute lookup
    # first, ~0.5 us instead of 0.04.
    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
