"""An adapter for an event store reached over HTTP (lighthouse's API shape).

The client names each event (``event_id``) and stamps its ``timestamp`` itself, so a retry after a
lost response is the same write: a server that deduplicates by id answers with the stored copy
instead of storing it twice. Only transport failures are retried; a 4xx is the store's answer.
Reads ask for MessagePack pages: a payload comes back as it was stored (JSON turns bytes into base64
text and a non-finite float into a string), and a long run's read-back is not held up by JSON.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import httpx
import msgpack

from testkit.adapters.base import AdapterError, StoredEvent

__all__ = ["HttpEventStoreAdapter"]

_MSGPACK = "application/msgpack"


def _stored(raw: Mapping[str, Any]) -> StoredEvent:
    return StoredEvent(
        event_id=raw["event_id"],
        sequence=raw["sequence"],
        event_type=raw["event_type"],
        aggregate_id=raw["aggregate_id"],
        source_agent=raw["source_agent"],
        data=raw.get("data") or {},
        correlation_id=raw.get("correlation_id"),
        causation_id=raw.get("causation_id"),
        aggregate_version=raw.get("aggregate_version"),
    )


def _body(response: httpx.Response) -> Any:
    """The answer decoded as its Content-Type says (MessagePack or JSON); ``ValueError`` if it is neither."""
    if response.headers.get("content-type", "").split(";")[0].strip().lower() == _MSGPACK:
        try:  # non-string map keys as stored: events written through the library may hold them
            return msgpack.unpackb(response.content, raw=False, strict_map_key=False)
        except (msgpack.UnpackException, ValueError, TypeError) as exc:
            raise ValueError(f"not MessagePack: {exc}") from None
    return response.json()


def _error(response: httpx.Response) -> AdapterError:
    try:
        body = _body(response)
    except ValueError:
        body = {}
    code = body.get("error") if isinstance(body, dict) else None
    message = body.get("message") if isinstance(body, dict) else None
    retryable = bool(body.get("retryable")) if isinstance(body, dict) else response.status_code >= 500
    return AdapterError(
        f"HTTP {response.status_code}: {message or response.text[:200]}",
        code=code or f"http_{response.status_code}",
        retryable=retryable,
    )


class HttpEventStoreAdapter:
    """``POST /events``, ``POST /events/batch``, ``GET /events`` with cursors, bearer-token auth."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str,
        timeout_s: float = 10.0,
        retries: int = 5,
        name: str = "lighthouse[http]",
    ) -> None:
        self.base_url = base_url
        self.name = name
        self._headers = {"Authorization": f"Bearer {token}"}
        self._timeout = timeout_s
        self._retries = retries
        self._client: httpx.AsyncClient | None = None

    async def open(self) -> None:
        self._client = httpx.AsyncClient(base_url=self.base_url, headers=self._headers, timeout=self._timeout)

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            raise AdapterError("adapter is not open", code="store_closed")
        return self._client

    async def _post(self, path: str, body: Any) -> Any:
        delay = 0.05
        for attempt in range(self._retries + 1):
            try:
                response = await self._http().post(path, json=body)
            except httpx.TransportError as exc:
                if attempt == self._retries:
                    # The write may or may not have landed: the caller must treat it as unknown.
                    raise AdapterError(f"no answer after {attempt + 1} attempts: {exc!r}", code="unknown_outcome",
                                       retryable=True) from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            if response.status_code >= 400:
                raise _error(response)
            return response.json()
        raise AssertionError("unreachable")

    @staticmethod
    def _pinned(event: Mapping[str, Any]) -> dict[str, Any]:
        """The event with its id and timestamp fixed, so every retry is the same write."""
        body = {k: v for k, v in event.items() if v is not None}
        body.setdefault("event_id", str(uuid.uuid4()))
        body.setdefault("timestamp", time.time())
        body.pop("source_agent", None)  # the server sets it from the token
        return body

    async def append(self, event: Mapping[str, Any]) -> StoredEvent:
        return _stored(await self._post("/events", self._pinned(event)))

    async def append_batch(self, events: Sequence[Mapping[str, Any]]) -> list[StoredEvent]:
        body = await self._post("/events/batch", {"events": [self._pinned(e) for e in events]})
        raw = body["events"] if isinstance(body, dict) else body
        return [_stored(e) for e in raw]

    async def _page(self, params: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await self._http().get("/events", params=params, headers={"Accept": _MSGPACK})
        except httpx.TransportError as exc:
            raise AdapterError(f"query failed: {exc!r}", code="unavailable", retryable=True) from None
        if response.status_code >= 400:
            raise _error(response)
        try:
            return _body(response)  # type: ignore[no-any-return]
        except ValueError as exc:
            raise AdapterError(f"unreadable page: {exc}", code="bad_response", retryable=False) from None

    async def read_all(self) -> AsyncIterator[StoredEvent]:
        params: dict[str, Any] = {"limit": 10_000}
        while True:
            page = await self._page(params)
            for raw in page["events"]:
                if raw["aggregate_id"] == "store:integrity" and raw["source_agent"] == "lighthouse":
                    continue  # the store's own damage records are not client writes
                yield _stored(raw)
            if not page.get("next_cursor"):
                return
            params = {"limit": 10_000, "cursor": page["next_cursor"]}

    async def query(
        self,
        *,
        event_types: Sequence[str] | None = None,
        aggregate_ids: Sequence[str] | None = None,
        limit: int = 1000,
    ) -> list[StoredEvent]:
        params: dict[str, Any] = {"limit": limit}
        if event_types:
            params["event_types"] = list(event_types)
        if aggregate_ids:
            params["aggregate_ids"] = list(aggregate_ids)
        return [_stored(e) for e in (await self._page(params))["events"]]

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()
