"""``/events``: append one event or an atomic batch, query with filters and cursors, get by id.

``source_agent`` is always the authenticated agent, whatever the body says. Appends are idempotent
by ``event_id``: sending the same event again (same id, same content) returns the stored copy with
200 instead of 201, so a client that lost a response can retry safely. Retrying clients must send
the ``timestamp`` themselves; otherwise the retry differs from the original and is refused (409).
"""

from __future__ import annotations

import re
import time
from urllib.parse import quote
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response

from lighthouse.bridge.vocabulary import BRIDGE_EVENT_TYPES
from lighthouse.errors import (
    BatchTooLarge,
    InvalidEvent,
    LighthouseError,
    ResourceExhausted,
    StoreReadOnly,
    WriteFailed,
)
from lighthouse.models import EVENT_FIELDS, MAX_BATCH_EVENTS, MAX_QUERY_LIMIT, Event, EventFilter, EventType
from lighthouse.server.answers import batch_answer, event_answer
from lighthouse.server.auth import Principal, Role
from lighthouse.server.codec import decode_body, integral, read_body, response_codec
from lighthouse.server.context import ServerContext, context_of, endpoint
from lighthouse.server.event_intake import quick_event
from lighthouse.server.openapi import MAX_SCHEMA_VERSION
from lighthouse.server.paging import bounded_page
from lighthouse.server.params import QueryReader
from lighthouse.server.problems import ApiError
from lighthouse.server.reserved import SERVER_EVENT_TYPES, check_client_event_id

__all__ = [
    "append_batch", "append_built", "append_built_one", "append_event", "append_many", "append_one", "event_from_body",
    "get_event", "query_events", "stored_is_new",
]

_STORE_ASSIGNED: Final[frozenset[str]] = frozenset({"sequence", "recorded_at", "aggregate_version"})
_CLIENT_FIELDS: Final[frozenset[str]] = frozenset(EVENT_FIELDS) - _STORE_ASSIGNED
#: Ids ``quote(.., safe="")`` leaves as they are (unreserved characters only).
_PLAIN_ID: Final = re.compile(r"[A-Za-z0-9_.~-]+").fullmatch
_FILTER_LISTS: Final[tuple[str, ...]] = ("event_types", "aggregate_ids", "source_agents")
_FILTER_SCALARS: Final[tuple[str, ...]] = (
    "correlation_id", "causation_id", "from_sequence", "to_sequence", "recorded_after", "recorded_before",
)


def event_from_body(raw: Any, principal: Principal, *, where: str = "the body") -> Event:
    """A client's event dict as an ``Event`` authored by ``principal``; 400/403 with the reason otherwise."""
    if not isinstance(raw, Mapping):
        raise InvalidEvent(f"{where} must be an event object")
    if not _CLIENT_FIELDS.issuperset(raw):  # the common case costs one C call; the reasons only on refusal
        assigned = sorted(_STORE_ASSIGNED & set(raw))
        if assigned:
            raise InvalidEvent(f"{assigned} are assigned by the store; do not send them", fields=assigned)
        unknown = sorted(set(raw) - _CLIENT_FIELDS)
        raise InvalidEvent(f"unknown event fields {unknown}", fields=unknown)
    fields = dict(raw)
    fields["source_agent"] = principal.agent_id  # the token decides who wrote it, never the body
    if "schema_version" in fields:
        fields["schema_version"] = integral(fields["schema_version"])
    version = fields.get("schema_version", 1)
    if isinstance(version, int) and not isinstance(version, bool) and version > MAX_SCHEMA_VERSION:
        raise InvalidEvent(f"schema_version must be at most {MAX_SCHEMA_VERSION}", field="schema_version")
    stamp = fields.get("timestamp")
    if isinstance(stamp, (int, float)) and not isinstance(stamp, bool) and not -1e15 <= stamp <= 1e15:
        raise InvalidEvent("timestamp must be seconds since the epoch within +-1e15", field="timestamp")
    for required in ("event_type", "aggregate_id"):  # Event.from_dict's checks; the field checks are done above
        if required not in fields:
            raise InvalidEvent(f"{required} is required", field=required)
    try:
        event = Event(fields.pop("event_type"), **fields)
    except (TypeError, ValueError, OverflowError) as exc:
        if isinstance(exc, LighthouseError):
            raise
        raise InvalidEvent(f"{where} is not a valid event: {exc}") from None
    check_client_event_id(event[0])
    kind: EventType = event[1]  # the enum itself on a freshly built event (the property re-parses it)
    if kind in SERVER_EVENT_TYPES:
        raise ApiError(403, "reserved_event_type", f"{kind.value} events are written by the server only",
                       event_type=kind.value)
    if kind in BRIDGE_EVENT_TYPES and not principal.role.includes(Role.ADMIN):
        raise ApiError(
            403, "reserved_event_type",
            f"{kind.value} events are written by the ValidationBridge; use its endpoints",
            event_type=kind.value,
        )
    return event


def stored_is_new(stored: Event, request_started_wall: float) -> bool:
    """A newly stored event was recorded after the request began; an idempotent retry returns an older copy."""
    return stored.recorded_at is not None and stored.recorded_at >= request_started_wall


async def _perform(
    ctx: ServerContext, kind: str, append: Callable[[], Awaitable[list[Event]]]
) -> tuple[list[Event], list[bool]]:
    """Run an append with admission control, alert accounting and metrics; (stored events, which are new)."""
    assert ctx.alerts is not None and ctx.metrics is not None
    ctx.admit_write()
    ctx.write_started()
    wall = time.time()
    started = time.perf_counter()
    try:
        stored = await append()
    except (WriteFailed, ResourceExhausted):
        ctx.alerts.record_append(time.perf_counter() - started, failed=True)
        raise
    except (StoreReadOnly, LighthouseError):
        raise  # refusals and client mistakes are not store errors
    except Exception:
        ctx.alerts.record_append(time.perf_counter() - started, failed=True)
        raise
    finally:
        ctx.write_finished()
    elapsed = time.perf_counter() - started
    ctx.alerts.record_append(elapsed)
    ctx.metrics.observe_append(kind, elapsed)
    fresh = [e[12] is not None and e[12] >= wall for e in stored]  # stored_is_new, inline: once per event
    if len(stored) == 1:  # a single append: nothing to group
        if fresh[0]:
            ctx.metrics.count_appended(str(stored[0][1]))
        return stored, fresh
    appended: dict[EventType, int] = {}  # new events per type (a Counter costs more to build than one count)
    for event, new in zip(stored, fresh):
        if new:
            appended[event[1]] = appended.get(event[1], 0) + 1
    for event_type, count in appended.items():
        ctx.metrics.count_appended(str(event_type), count)
    return stored, fresh


def _expected_version(reader: QueryReader) -> int | None:
    return reader.integer("expected_version", minimum=0)


async def append_one(ctx: ServerContext, principal: Principal, body: Any,
                     expected: int | None) -> tuple[Event, int, dict[str, str]]:
    """Append one decoded event body: (the stored event, status, headers). Shared by the route and the lean front."""
    event = (quick_event(body, principal.agent_id, bridge_types=principal.role.includes(Role.ADMIN))
             or event_from_body(body, principal))
    return await append_built_one(ctx, event, expected)


async def append_built_one(ctx: ServerContext, event: Event, expected: int | None) -> tuple[Event, int, dict[str, str]]:
    """``append_one`` once the event is built. The lean front calls it directly with what ``quick_single`` built."""
    assert ctx.store is not None
    store = ctx.store

    async def append() -> list[Event]:
        return [await store.append(event, expected_version=expected, from_wire=True)]

    (stored,), (new,) = await _perform(ctx, "single", append)
    event_id = stored[0]
    path = event_id if _PLAIN_ID(event_id) else quote(event_id, safe="")  # uuids and most ids quote to themselves
    return stored, 201 if new else 200, {"Location": f"/events/{path}"}


@endpoint("/events")
async def append_event(request: Request) -> Response:
    ctx = context_of(request)
    principal = ctx.principal(request)
    # Most appends carry no query string: parsing and validating an empty one is skipped.
    expected = (_expected_version(QueryReader(request.query_params, scalars=("expected_version",)))
                if request.scope.get("query_string") else None)
    body = decode_body(await read_body(request, ctx.settings.max_event_body_bytes), request.headers.get("content-type"))
    stored, status, headers = await append_one(ctx, principal, body, expected)
    codec = response_codec(request)
    return Response(event_answer(codec, stored), status_code=status, media_type=codec.media_type, headers=headers)


def _expected_versions(raw: Any) -> dict[str, int] | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or not raw:
        raise InvalidEvent("expected_versions must be a non-empty object of aggregate id -> version")
    out = {}
    for key, value in raw.items():
        value = integral(value)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
            raise InvalidEvent(f"expected_versions[{key!r}] must be a non-negative integer", aggregate_id=key)
        out[str(key)] = value
    return out


async def append_many(ctx: ServerContext, principal: Principal, body: Any) -> tuple[list[Event], int]:
    """Append a decoded batch body atomically: (the stored events, status). Shared by the route and the lean front."""
    if not isinstance(body, Mapping):
        raise InvalidEvent('the body must be an object {"events": [...], "expected_versions": {...}}')
    unknown = sorted(set(body) - {"events", "expected_versions"})
    if unknown:
        raise InvalidEvent(f"unknown batch fields {unknown}", fields=unknown)
    raw_events = body.get("events")
    if not isinstance(raw_events, list):
        raise InvalidEvent("events must be a list of event objects")
    if not raw_events:
        raise InvalidEvent("a batch holds at least one event")
    if len(raw_events) > MAX_BATCH_EVENTS:
        raise BatchTooLarge(f"a batch holds 1..{MAX_BATCH_EVENTS} events, got {len(raw_events)}", count=len(raw_events))
    agent, bridge_types = principal.agent_id, principal.role.includes(Role.ADMIN)
    events = [quick_event(raw, agent, bridge_types=bridge_types) or event_from_body(raw, principal, where=f"events[{i}]")
              for i, raw in enumerate(raw_events)]
    return await append_built(ctx, events, body.get("expected_versions"))


async def append_built(ctx: ServerContext, events: list[Event], expected_versions: Any) -> tuple[list[Event], int]:
    """``append_many`` once the batch's events are built: checks ``expected_versions`` (as the body gave it) and
    appends atomically. The lean front calls it directly with what ``quick_batch`` built."""
    expected = _expected_versions(expected_versions)
    assert ctx.store is not None
    store = ctx.store

    async def append() -> list[Event]:
        return await store.append_batch(events, expected_versions=expected, from_wire=True)

    stored, fresh = await _perform(ctx, "batch", append)
    return stored, 201 if any(fresh) else 200


@endpoint("/events/batch")
async def append_batch(request: Request) -> Response:
    ctx = context_of(request)
    principal = ctx.principal(request)
    if request.scope.get("query_string"):
        QueryReader(request.query_params)  # refuses unknown parameters
    body = decode_body(await read_body(request, ctx.settings.max_batch_body_bytes), request.headers.get("content-type"))
    stored, status = await append_many(ctx, principal, body)
    codec = response_codec(request)
    return Response(batch_answer(codec, stored), status_code=status, media_type=codec.media_type)


@endpoint("/events")
async def query_events(request: Request) -> Response:
    ctx = context_of(request)
    ctx.principal(request)
    reader = QueryReader(
        request.query_params, lists=_FILTER_LISTS, scalars=(*_FILTER_SCALARS, "limit", "cursor", "order")
    )
    event_filter = EventFilter(
        event_types=reader.strings("event_types"),  # type: ignore[arg-type]
        aggregate_ids=reader.strings("aggregate_ids", max_length=256),  # type: ignore[arg-type]
        source_agents=reader.strings("source_agents", max_length=256),  # type: ignore[arg-type]
        correlation_id=reader.string("correlation_id"),
        causation_id=reader.string("causation_id"),
        from_sequence=reader.integer("from_sequence"),
        to_sequence=reader.integer("to_sequence"),
        recorded_after=reader.number("recorded_after", bound=1e15),
        recorded_before=reader.number("recorded_before", bound=1e15),
    )
    limit = reader.integer("limit", minimum=1, maximum=MAX_QUERY_LIMIT, default=ctx.settings.default_query_limit)
    cursor = reader.string("cursor")
    descending = reader.choice("order", ("asc", "desc"), "asc") == "desc"
    assert ctx.store is not None and ctx.metrics is not None and limit is not None
    started = time.perf_counter()
    response = await bounded_page(ctx.store, event_filter, limit=limit, cursor=cursor, descending=descending,
                                  codec=response_codec(request), max_bytes=ctx.settings.max_page_bytes)
    ctx.metrics.query_latency.labels(kind="query").observe(time.perf_counter() - started)
    return response


@endpoint("/events/{event_id}")
async def get_event(request: Request) -> Response:
    ctx = context_of(request)
    ctx.principal(request)
    QueryReader(request.query_params)
    event_id = request.path_params["event_id"]
    if not event_id or len(event_id) > 256:
        raise ApiError(404, "not_found", "no such event")
    assert ctx.store is not None and ctx.metrics is not None
    started = time.perf_counter()
    try:
        event = await ctx.store.get(event_id)
    finally:  # a lookup that finds nothing costs time too
        ctx.metrics.query_latency.labels(kind="get").observe(time.perf_counter() - started)
    return response_codec(request).response(event.to_dict())
