"""The common case of a client's event, built in one pass: plain types, in range, of a type its author may write.

``event_from_body`` checks a client's event field by field and then builds it through ``Event``'s
keyword constructor, which checks most fields again: 19 us per event on this 2 GHz machine, the largest
part of a batch's cost (``quick_event``: 6 us).
Nearly every event an agent sends is the common case (string ids, a float timestamp, dict data), and
for it the verdict is known after one cheap test per field. ``quick_event`` builds that case directly
and answers ``None`` for anything else (a missing id, a server event type, a bridge type from anyone but an
admin, a float schema_version, an id out of range...), which then takes the full path and gets its reasons there.
``test_event_intake`` checks that whatever it builds is what the full path builds.

``quick_batch`` goes one step further for a JSON batch body: msgspec decodes it straight into typed
fields (its C decoder refuses a wrong type, a missing id, an unknown field, a length or a number out of
range as it parses), which leaves only id syntax and who may write which type to Python: 2.0-2.2 us per
event of a 100-event batch where decoding to dicts and ``quick_event`` took 3.3-4.1 (measured beside a
soak; lengths and ranges in the decoder and one default aggregate_type per aggregate later took it from
138 to 113 us per batch of 100). Any body it does not build whole is decoded and judged by the general
path (decoded twice, then), which explains what is wrong with it. ``quick_single`` does the same for the
JSON body of one event.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Final

import msgspec

from lighthouse.bridge.vocabulary import BRIDGE_EVENT_TYPES
from lighthouse.models import EVENT_FIELDS, MAX_BATCH_EVENTS, Event, EventType, default_aggregate_type
from lighthouse.server.codec import check_nesting_at
from lighthouse.server.openapi import MAX_SCHEMA_VERSION
from lighthouse.server.problems import ApiError
from lighthouse.server.reserved import CLIENT_EVENT_ID, RESERVED_ID_PREFIX, SERVER_EVENT_TYPES

__all__ = ["quick_batch", "quick_event", "quick_single"]

_MAX_ID: Final[int] = 256
#: The types any agent may write (the server's own and the bridge's need the full path's checks).
_ORDINARY_TYPES: Final[dict[str, EventType]] = {
    kind.value: kind for kind in EventType if kind not in SERVER_EVENT_TYPES and kind not in BRIDGE_EVENT_TYPES
}
#: The ValidationBridge's types, which an admin may write directly (importing or replaying a platform's log).
_BRIDGE_TYPES: Final[dict[str, EventType]] = {kind.value: kind for kind in BRIDGE_EVENT_TYPES}
_CLIENT_FIELDS: Final[frozenset[str]] = frozenset(EVENT_FIELDS) - {"sequence", "recorded_at", "aggregate_version"}
_new = tuple.__new__
_client_id = CLIENT_EVENT_ID.fullmatch


def _optional_id(value: Any) -> bool:
    return value is None or (type(value) is str and 0 < len(value) <= _MAX_ID)


def quick_event(raw: Any, agent_id: str, *, bridge_types: bool = False) -> Event | None:
    """``raw`` as the ``Event`` the full path would build (authored by ``agent_id``), or ``None`` when
    it is not the plain common case. ``bridge_types``: the author may write the bridge's types (an admin,
    as the full path allows). Written flat: it runs once per event of every append."""
    if type(raw) is not dict or not _CLIENT_FIELDS.issuperset(raw):
        return None
    get = raw.get
    event_id, aggregate, kind_name = get("event_id"), get("aggregate_id"), get("event_type")
    if (type(event_id) is not str or type(aggregate) is not str or type(kind_name) is not str
            or not 0 < len(aggregate) <= _MAX_ID or _client_id(event_id) is None
            or event_id[:3].lower() == RESERVED_ID_PREFIX):
        return None
    kind = _ORDINARY_TYPES.get(kind_name) or (_BRIDGE_TYPES.get(kind_name) if bridge_types else None)
    aggregate_type = get("aggregate_type")
    if kind is None or not _optional_id(get("correlation_id")) or not _optional_id(get("causation_id")):
        return None
    if aggregate_type is None:
        aggregate_type = default_aggregate_type(aggregate, kind)
    elif type(aggregate_type) is not str or len(aggregate_type) > _MAX_ID:
        return None
    stamp = get("timestamp")
    if stamp is None:  # absent or null: now, as ``Event`` does
        stamp = time.time()
    elif (type(stamp) is not float and type(stamp) is not int) or not -1e15 <= stamp <= 1e15:
        return None
    version = get("schema_version", 1)
    data, metadata = get("data"), get("metadata")
    if (type(version) is not int or not 1 <= version <= MAX_SCHEMA_VERSION
            or (data is not None and type(data) is not dict) or (metadata is not None and type(metadata) is not dict)
            or type(agent_id) is not str or not 0 < len(agent_id) <= _MAX_ID):
        return None
    return _new(Event, (
        event_id, kind, aggregate, aggregate_type, get("correlation_id"), get("causation_id"), agent_id,
        float(stamp), {} if data is None else data.copy(), {} if metadata is None else metadata.copy(), version,
        None, None, None,
    ))


#: The length and range checks of a client's fields, made by msgspec's decoder as it parses (in C, where
#: ``_typed_events`` made them in Python per event): exactly ``quick_event``'s, so what fails one fails both.
#: An event id's character set stays a Python ``fullmatch``: as a decoder pattern it cost more than it saved.
_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=_MAX_ID)]
_AggregateType = Annotated[str, msgspec.Meta(max_length=_MAX_ID)]
_Timestamp = Annotated[float, msgspec.Meta(ge=-1e15, le=1e15)]
_SchemaVersion = Annotated[int, msgspec.Meta(ge=1, le=MAX_SCHEMA_VERSION)]


class _WireEvent(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """A client's event with the types and ranges of the common case (``quick_event``'s tests, done by the
    decoder). Untracked by the collector (``gc=False``): decoded JSON holds no cycle, and a batch decodes
    hundreds."""

    event_id: str
    event_type: str
    aggregate_id: _Id
    aggregate_type: _AggregateType | None = None
    correlation_id: _Id | None = None
    causation_id: _Id | None = None
    source_agent: str | None = None  # ignored, as everywhere: the token names the author
    timestamp: _Timestamp | None = None  # an integer is read as a float, as ``quick_event`` converts it
    data: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    schema_version: _SchemaVersion = 1


class _WireBatch(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    events: list[_WireEvent]
    expected_versions: dict[str, Any] | None = None


_decode_batch: Final = msgspec.json.Decoder(_WireBatch).decode
_decode_event: Final = msgspec.json.Decoder(_WireEvent).decode
#: depth below the body's root of a batch's ``expected_versions`` (1), of a batch's events' data and metadata
#: (3) and of a single event's (1)
_EXPECTED_DEPTH: Final[int] = 1
_EVENT_MAPPING_DEPTH: Final[int] = 3
_SINGLE_MAPPING_DEPTH: Final[int] = 1


def quick_batch(body: bytes, agent_id: str, *,
                bridge_types: bool = False) -> tuple[list[Event], dict[str, Any] | None] | None:
    """A JSON batch body as the events ``quick_event`` builds from it and its raw ``expected_versions``, or
    ``None`` unless every one of its 1..``MAX_BATCH_EVENTS`` events is the plain common case (then the general
    path decodes and judges it). ``agent_id`` and ``bridge_types`` as for ``quick_event``."""
    try:
        batch = _decode_batch(body)
    except (msgspec.DecodeError, RecursionError):  # ValidationError is a DecodeError
        return None
    if not 0 < len(batch.events) <= MAX_BATCH_EVENTS:
        return None
    events = _typed_events(batch.events, agent_id, bridge_types, _EVENT_MAPPING_DEPTH)
    if events is None:
        return None
    if batch.expected_versions:
        try:
            check_nesting_at([batch.expected_versions], _EXPECTED_DEPTH)
        except ApiError:
            return None
    return events, batch.expected_versions


def quick_single(body: bytes, agent_id: str, *, bridge_types: bool = False) -> Event | None:
    """A JSON body of one event as ``quick_event`` builds it, decoded straight into typed fields as
    ``quick_batch`` decodes a batch's events; ``None`` when it is not the plain common case (the general path
    decodes and judges it then). ``agent_id`` and ``bridge_types`` as for ``quick_event``."""
    try:
        item = _decode_event(body)
    except (msgspec.DecodeError, RecursionError):
        return None
    built = _typed_events([item], agent_id, bridge_types, _SINGLE_MAPPING_DEPTH)
    return built[0] if built is not None else None


def _typed_events(wire: list[_WireEvent], agent_id: str, bridge_types: bool, mapping_depth: int) -> list[Event] | None:
    """The events of decoded ``wire`` items, or ``None`` unless every one is the plain common case and no data
    or metadata (``mapping_depth`` levels below the body's root) nests too deeply. Written flat: it runs once
    per event of every typed append."""
    if type(agent_id) is not str or not 0 < len(agent_id) <= _MAX_ID:
        return None
    events: list[Event] = []
    mappings: list[dict[str, Any]] = []
    prefixes: dict[str, str] = {}  # aggregate id -> its default aggregate_type, for ids with a prefix
    ordinary, bridge, client_id, now = _ORDINARY_TYPES.get, _BRIDGE_TYPES.get, _client_id, time.time
    for item in wire:  # lengths and ranges were checked by the decoder (``_WireEvent``)
        kind_name, aggregate, aggregate_type = item.event_type, item.aggregate_id, item.aggregate_type
        stamp, data, metadata = item.timestamp, item.data, item.metadata
        kind = ordinary(kind_name) or (bridge(kind_name) if bridge_types else None)
        event_id = item.event_id
        if kind is None or client_id(event_id) is None or event_id[:3].lower() == RESERVED_ID_PREFIX:
            return None
        if data is None:
            data = {}
        elif data:
            mappings.append(data)
        if metadata is None:
            metadata = {}
        elif metadata:
            mappings.append(metadata)
        if aggregate_type is None:
            aggregate_type = prefixes.get(aggregate)
            if aggregate_type is None:
                aggregate_type = default_aggregate_type(aggregate, kind)
                if ":" in aggregate:  # the id's prefix, whatever the type: one string for the batch's events
                    prefixes[aggregate] = aggregate_type
        events.append(_new(Event, (
            event_id, kind, aggregate, aggregate_type, item.correlation_id, item.causation_id, agent_id,
            now() if stamp is None else stamp, data, metadata, item.schema_version, None, None, None,
        )))
    try:
        check_nesting_at(mappings, mapping_depth)
    except ApiError:
        return None  # too deep: the general path refuses it with the same words
    return events
