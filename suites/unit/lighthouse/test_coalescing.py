"""``CoalescingTransport`` joins one loop turn's writes, and never holds back what flow control must see.

The wrapped transport here records its writes (the real server's segments are counted in
suites/integration/test_response_writes.py); the loop is real, so "one turn" is asyncio's own.
"""

from __future__ import annotations

import asyncio
from typing import Any

from lighthouse.server.coalescing import FLUSH_AT_BYTES, CoalescingTransport


class RecordingTransport(asyncio.WriteTransport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closing = False
        self.aborted = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = self.aborted = True

    def get_write_buffer_size(self) -> int:
        return 7


async def _next_turn() -> None:
    await asyncio.sleep(0)
    await asyncio.sleep(0)


def test_writes_of_one_turn_leave_as_one_at_the_next(run) -> None:
    async def scenario() -> None:
        raw = RecordingTransport()
        transport = CoalescingTransport(raw)
        transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
        transport.write(b"{}")
        assert raw.writes == []
        await _next_turn()
        assert raw.writes == [b"HTTP/1.1 200 OK\r\n\r\n{}"]
        transport.write(b"next")
        transport.flush()  # the protocol's "response complete"
        transport.flush()
        assert raw.writes[1:] == [b"next"]
        await _next_turn()
        assert len(raw.writes) == 2, "the scheduled flush found nothing left to send"
        assert transport.get_write_buffer_size() == 7  # everything else is the wrapped transport's

    run(scenario())


def test_a_large_body_reaches_the_transport_in_steps(run) -> None:
    async def scenario() -> None:
        raw = RecordingTransport()
        transport = CoalescingTransport(raw)
        chunk = b"x" * (FLUSH_AT_BYTES // 4)
        for _ in range(10):
            transport.write(chunk)
        assert [len(w) for w in raw.writes] == [FLUSH_AT_BYTES, FLUSH_AT_BYTES]
        await _next_turn()
        assert sum(map(len, raw.writes)) == 10 * len(chunk)

    run(scenario())


def test_close_sends_what_is_held_and_abort_drops_it(run) -> None:
    async def scenario() -> None:
        raw = RecordingTransport()
        transport = CoalescingTransport(raw)
        transport.write(b"last words")
        transport.close()
        assert raw.writes == [b"last words"] and raw.closing
        other = RecordingTransport()
        dropped = CoalescingTransport(other)
        dropped.write(b"never sent")
        dropped.abort()
        await _next_turn()
        assert other.aborted and other.writes == []

    run(scenario())


def test_the_per_request_queries_are_the_wrapped_transports_answers() -> None:
    """``is_closing`` and ``get_extra_info`` are defined on the wrapper (the hot path skips ``__getattr__``),
    and still answer exactly as the wrapped transport does, the default included."""
    raw = RecordingTransport()
    raw._extra = {"peername": ("127.0.0.1", 5555)}  # what asyncio's transports hand to get_extra_info
    transport = CoalescingTransport(raw)
    assert {"is_closing", "get_extra_info"} <= set(vars(CoalescingTransport))
    assert transport.is_closing() is False
    assert transport.get_extra_info("peername") == ("127.0.0.1", 5555)
    assert transport.get_extra_info("sockname", "none") == "none"
    raw.close()
    assert transport.is_closing() is True
