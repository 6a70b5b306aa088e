"""Query pages bounded by bytes as well as by count (Kafka's ``max_bytes``), streamed as they are read.

A page of 10,000 one-MiB events would be 10 GiB built in memory. Here the store is read in small
chunks (sized from the events seen so far), each event is encoded and handed to the response as soon
as it is read, and the page ends at ``max_page_bytes`` of encoded events (always at least one event)
with a ``next_cursor`` that continues exactly after the last event sent. A request's peak memory is
therefore about one chunk plus ``max_page_bytes``, whatever ``limit`` says. JSON pages are streamed;
MessagePack needs the element count before the elements, so its (byte-bounded) page is assembled first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Final

import msgpack
from starlette.responses import Response, StreamingResponse

from lighthouse.models import EventFilter
from lighthouse.server.codec import JSON, MSGPACK, Codec

__all__ = ["bounded_page"]

_FIRST_CHUNK: Final[int] = 8
_MAX_CHUNK: Final[int] = 512
_STREAM_ABOVE: Final[int] = 1 << 20  # smaller pages are sent whole, with a Content-Length


class _PageReader:
    """Reads one page chunk by chunk; ``next_cursor`` is known once ``blobs()`` is exhausted."""

    def __init__(self, store: Any, flt: EventFilter, limit: int, cursor: str | None, descending: bool,
                 codec: Codec, max_bytes: int) -> None:
        self.store, self.flt, self.descending, self.codec = store, flt, descending, codec
        self.remaining, self.budget, self.cursor = limit, max_bytes, cursor
        self._initial_budget = max_bytes
        self.next_cursor: str | None = None
        self.sent = 0
        self._pending: list[bytes] = []
        self._done = False

    async def prime(self, up_to_bytes: int) -> bool:
        """Read ahead up to ``up_to_bytes`` now (so a bad cursor is a 4xx before the response starts);
        True if that was the whole page."""
        await self._read_chunk()
        while not self._done and sum(map(len, self._pending)) < up_to_bytes:
            await self._read_chunk()
        return self._done

    async def _read_chunk(self) -> None:
        average = (self._initial_budget - self.budget) / self.sent if self.sent else 0
        size = _FIRST_CHUNK if not self.sent else int(self.budget // max(1.0, average)) + 1
        size = max(1, min(self.remaining, _MAX_CHUNK, size))
        result = await self.store.query(self.flt, limit=size, cursor=self.cursor, descending=self.descending)
        taken = 0
        for event in result.events:
            blob = self.codec.encode(event.to_dict())
            if self.sent and len(blob) > self.budget:
                break
            self._pending.append(blob)
            self.budget -= len(blob)
            self.sent += 1
            taken += 1
        if taken == len(result.events):
            self.cursor, self.remaining = result.next_cursor, self.remaining - size
            if result.next_cursor is None or self.remaining <= 0:
                self.next_cursor, self._done = result.next_cursor, True
            return
        # The byte budget ended the page inside this chunk: the cursor after the last event taken.
        self._done = True
        if taken:
            prefix = await self.store.query(self.flt, limit=taken, cursor=self.cursor, descending=self.descending)
            self.next_cursor = prefix.next_cursor
        else:
            self.next_cursor = self.cursor

    async def blobs(self) -> AsyncIterator[bytes]:
        while True:
            while self._pending:
                yield self._pending.pop(0)
            if self._done:
                return
            await self._read_chunk()


async def bounded_page(store: Any, flt: EventFilter, *, limit: int, cursor: str | None, descending: bool,
                       codec: Codec, max_bytes: int) -> Response:
    """The response for one page: at most ``limit`` events and (beyond the first) ``max_bytes`` of them."""
    reader = _PageReader(store, flt, limit, cursor, descending, codec, max_bytes)
    whole = await reader.prime(_STREAM_ABOVE)
    if whole and codec is JSON:
        body = b"".join([b'{"events":[', b",".join(reader._pending), b'],"next_cursor":',
                         JSON.encode(reader.next_cursor), b"}"])
        return Response(body, media_type=JSON.media_type)
    if codec is MSGPACK:
        blobs = [blob async for blob in reader.blobs()]
        packer = msgpack.Packer(use_bin_type=True)
        body = b"".join([packer.pack_map_header(2), packer.pack("events"), packer.pack_array_header(len(blobs)),
                         *blobs, packer.pack("next_cursor"), packer.pack(reader.next_cursor)])
        return Response(body, media_type=MSGPACK.media_type)

    async def json_body() -> AsyncIterator[bytes]:
        yield b'{"events":['
        first = True
        async for blob in reader.blobs():
            yield blob if first else b"," + blob
            first = False
        yield b'],"next_cursor":' + JSON.encode(reader.next_cursor) + b"}"

    return StreamingResponse(json_body(), media_type=JSON.media_type)
