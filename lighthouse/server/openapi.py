"""The OpenAPI 3.1 document of the HTTP API, served at ``/openapi.json``.

Written by hand next to the handlers and kept honest by the fuzzing suite: schemathesis generates
requests from this document and fails on any 5xx, any undocumented status and any response that
does not match its schema. Constraints stated here are exactly those the server enforces, so that
schema-valid requests are accepted and schema-invalid ones refused.
"""

from __future__ import annotations

from typing import Any, Final

from lighthouse import __version__
from lighthouse.bridge.vocabulary import PAIR_MODES, REVIEW_DECISIONS
from lighthouse.models import MAX_BATCH_EVENTS, MAX_QUERY_LIMIT, EventType

__all__ = ["MAX_SCHEMA_VERSION", "MAX_WAIT_SECONDS", "openapi_document"]

MAX_SCHEMA_VERSION: Final[int] = 2**31 - 1
MAX_WAIT_SECONDS: Final[float] = 60.0
#: reserved.py's rule for client ids: the documented character set, outside the store's "lh:" namespace.
CLIENT_EVENT_ID_PATTERN: Final[str] = r"^(?![lL][hH]:)[A-Za-z0-9][A-Za-z0-9_\-:@+=~.]{0,255}(?![\s\S])"
_ID: Final[dict[str, Any]] = {"type": "string", "minLength": 1, "maxLength": 256}
_SHORT_ID: Final[dict[str, Any]] = {"type": "string", "minLength": 1, "maxLength": 128}
_NULLABLE_ID: Final[dict[str, Any]] = {"type": ["string", "null"], "minLength": 1, "maxLength": 256}
_TEXT: Final[dict[str, Any]] = {"type": "string", "minLength": 1, "maxLength": 65536}


#: What JSON Schema cannot say about free-form objects without recursive references.
_FREE_FORM: Final[str] = (
    "Any JSON object, stored as MessagePack: integers must fit in 64 bits and strings must be valid Unicode "
    "(no lone surrogates); otherwise 400 invalid_event."
)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}, "application/msgpack": {"schema": schema}}


_ERROR_TEXT: Final[dict[int, str]] = {
    400: "Malformed request: bad JSON/MessagePack, wrong types, unknown fields or parameters, bad cursor",
    401: "Missing, malformed, forged or expired bearer token",
    403: "The token's role does not allow this, or the agent may not take this step",
    404: "No such resource",
    409: "Conflicts with the stored state (event id reused with other content, version mismatch, not pending)",
    413: "Body, event or batch too large",
    414: "Request line (path and query string) too long",
    415: "Unsupported Content-Type",
    429: "This principal has too many requests in flight; retry after Retry-After seconds",
    431: "Request header block too large or with too many fields",
    503: "Read-only, shutting down or temporarily unable; retry after Retry-After seconds",
}


def _responses(ok: dict[int, tuple[str, dict[str, Any] | None]], errors: tuple[int, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for status, (text, schema) in ok.items():
        out[str(status)] = {"description": text, **({"content": _content(schema)} if schema is not None else {})}
    for status in errors:
        entry: dict[str, Any] = {"description": _ERROR_TEXT[status], "content": _content(_ref("Error"))}
        if status == 503:
            entry["headers"] = {"Retry-After": {"schema": {"type": "string", "pattern": "^[0-9]+$"}}}
        out[str(status)] = entry
    return out


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": _content(schema)}


def _query(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _list_query(name: str, items: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "style": "form", "explode": True,
            "schema": {"type": "array", "items": items}, "description": description}


def _path(name: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema or _SHORT_ID}


_SECURED: Final[list[dict[str, list[str]]]] = [{"bearer": []}]
_WRITE_ERRORS: Final[tuple[int, ...]] = (400, 401, 403, 409, 413, 414, 415, 429, 431, 503)
_READ_ERRORS: Final[tuple[int, ...]] = (400, 401, 403, 414, 429, 431)


def _schemas() -> dict[str, Any]:
    event_types = [t.value for t in EventType]
    object_any = {"type": "object"}
    return {
        "Error": {
            "type": "object",
            "required": ["error", "message", "retryable", "details"],
            "properties": {
                "error": {"type": "string", "description": "stable machine-readable code"},
                "message": {"type": "string"},
                "retryable": {"type": "boolean"},
                "details": object_any,
            },
        },
        "NewEvent": {
            "type": "object",
            "description": "An event to append. source_agent is taken from the token; a value sent here is ignored.",
            "required": ["event_type", "aggregate_id"],
            "additionalProperties": False,
            "properties": {
                "event_id": {**_NULLABLE_ID, "pattern": CLIENT_EVENT_ID_PATTERN,
                             "description": "client-chosen id (the server picks one if absent); resending the "
                                            "same event is idempotent"},
                "event_type": {"type": "string", "enum": event_types},
                "aggregate_id": _ID,
                "aggregate_type": {"type": ["string", "null"], "maxLength": 256},
                "correlation_id": _NULLABLE_ID,
                "causation_id": _NULLABLE_ID,
                "source_agent": {"description": "ignored: the server sets it from the token"},
                "timestamp": {"type": ["number", "null"], "minimum": -1e15, "maximum": 1e15,
                              "description": "client clock, seconds since the epoch; set it when retrying"},
                "data": {"type": ["object", "null"], "description": _FREE_FORM},
                "metadata": {"type": ["object", "null"], "description": _FREE_FORM},
                "schema_version": {"type": "integer", "minimum": 1, "maximum": MAX_SCHEMA_VERSION},
            },
        },
        "Event": {
            "type": "object",
            "required": ["event_id", "event_type", "aggregate_id", "aggregate_type", "correlation_id", "causation_id",
                         "source_agent", "timestamp", "data", "metadata", "schema_version", "sequence",
                         "recorded_at", "aggregate_version"],
            "properties": {
                "event_id": {"type": "string"},
                "event_type": {"type": "string", "enum": event_types},
                "aggregate_id": {"type": "string"},
                "aggregate_type": {"type": "string"},
                "correlation_id": {"type": ["string", "null"]},
                "causation_id": {"type": ["string", "null"]},
                "source_agent": {"type": "string"},
                "timestamp": {"type": "number"},
                "data": object_any,
                "metadata": object_any,
                "schema_version": {"type": "integer", "minimum": 1},
                "sequence": {"type": "integer", "minimum": 1},
                "recorded_at": {"type": "number"},
                "aggregate_version": {"type": "integer", "minimum": 1},
            },
        },
        "Batch": {
            "type": "object",
            "required": ["events"],
            "additionalProperties": False,
            "properties": {
                "events": {"type": "array", "items": _ref("NewEvent"), "minItems": 1, "maxItems": MAX_BATCH_EVENTS,
                           "description": "no two events of a batch share an `event_id` (400 invalid_event)"},
                "expected_versions": {
                    "type": ["object", "null"], "minProperties": 1,
                    "additionalProperties": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
                },
            },
        },
        "EventList": {
            "type": "object",
            "required": ["events"],
            "properties": {"events": {"type": "array", "items": _ref("Event")}},
        },
        "QueryResult": {
            "type": "object",
            "required": ["events", "next_cursor"],
            "properties": {
                "events": {"type": "array", "items": _ref("Event")},
                "next_cursor": {"type": ["string", "null"]},
            },
        },
        "Health": {
            "type": "object",
            "required": ["state", "writable"],
            "properties": {
                "state": {"type": "string", "enum": ["healthy", "degraded", "read_only", "failed"]},
                "writable": {"type": "boolean"},
            },
        },
        "HealthDetailed": {
            "type": "object",
            "required": ["state", "writable", "reasons", "store", "alerts", "stats", "server"],
            "properties": {
                "state": {"type": "string", "enum": ["healthy", "degraded", "read_only", "failed"]},
                "writable": {"type": "boolean"},
                "reasons": {"type": "object", "additionalProperties": {"type": "string"}},
                "store": object_any,
                "alerts": object_any,
                "stats": object_any,
                "server": object_any,
                "bridge": {"type": ["object", "null"]},
            },
        },
        "Proposal": {
            "type": "object",
            "required": ["tool", "tool_input"],
            "additionalProperties": False,
            "properties": {
                "tool": _SHORT_ID,
                "tool_input": {"type": "object", "description": _FREE_FORM},
                "session_id": _NULLABLE_ID,
                "command_id": {**_SHORT_ID, "type": ["string", "null"],
                               "description": "client-chosen; resending the same proposal is idempotent"},
                "correlation_id": _NULLABLE_ID,
                "causation_id": _NULLABLE_ID,
                "preferred_expert": {**_SHORT_ID, "type": ["string", "null"]},
            },
        },
        "Command": {
            "type": "object",
            "required": ["command_id", "agent_id", "tool", "status"],
            "properties": {
                "command_id": {"type": "string"},
                "agent_id": {"type": "string"},
                "session_id": {"type": ["string", "null"]},
                "tool": {"type": "string"},
                "tool_input": object_any,
                "risk": {"type": ["string", "null"], "enum": ["safe", "review", "dangerous", None]},
                "rule": {"type": ["string", "null"]},
                "expert_role": {"type": ["string", "null"]},
                "status": {"type": "string", "enum": ["received", "validated", "escalated", "approved", "rejected",
                                                       "executed", "failed"]},
                "decision": {"type": ["string", "null"], "enum": ["approved", "rejected", None]},
                "approver": {"type": ["string", "null"]},
                "approval_method": {"type": ["string", "null"], "enum": ["policy", "expert", "timeout", None]},
                "reason": {"type": ["string", "null"]},
                "escalated_to": {"type": ["string", "null"]},
                "deadline": {"type": ["number", "null"]},
                "correlation_id": {"type": ["string", "null"]},
            },
        },
        "Decision": {
            "type": "object",
            "required": ["decision"],
            "additionalProperties": False,
            "properties": {
                "decision": {"type": "string", "enum": ["approve", "reject"]},
                "reason": {"type": ["string", "null"], "minLength": 1, "maxLength": 65536},
            },
        },
        "PairRequest": {
            "type": "object",
            "required": ["mode", "task"],
            "additionalProperties": False,
            "properties": {
                "mode": {"type": "string", "enum": list(PAIR_MODES)},
                "task": {"type": "string", "minLength": 1, "maxLength": 4096},
                "partner": {**_SHORT_ID, "type": ["string", "null"]},
                "pair_id": {**_SHORT_ID, "type": ["string", "null"]},
                "causation_id": _NULLABLE_ID,
            },
        },
        "PairSession": {
            "type": "object",
            "required": ["pair_id", "requester", "mode", "state", "suggestions"],
            "properties": {
                "pair_id": {"type": "string"},
                "requester": {"type": "string"},
                "mode": {"type": "string"},
                "task": {"type": ["string", "null"]},
                "invited": {"type": ["string", "null"]},
                "partner": {"type": ["string", "null"]},
                "state": {"type": "string", "enum": ["requested", "active", "completed", "cancelled", "expired"]},
                "suggestions": {"type": "integer", "minimum": 0},
                "review_decision": {"type": ["string", "null"]},
                "feedback": {"type": ["string", "null"]},
                "deadline": {"type": ["number", "null"]},
                "closed_by": {"type": ["string", "null"]},
            },
        },
        "Suggestion": {
            "type": "object",
            "required": ["suggestion"],
            "additionalProperties": False,
            "properties": {
                "suggestion": _TEXT,
                "suggestion_id": {**_SHORT_ID, "type": ["string", "null"]},
                "kind": {**_SHORT_ID, "type": ["string", "null"]},
            },
        },
        "Review": {
            "type": "object",
            "required": ["decision"],
            "additionalProperties": False,
            "properties": {
                "decision": {"type": "string", "enum": list(REVIEW_DECISIONS)},
                "feedback": {**_TEXT, "type": ["string", "null"]},
                "accepted_suggestions": {"type": ["integer", "null"], "minimum": 0},
            },
        },
        "Cancel": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"reason": {**_TEXT, "type": ["string", "null"]}},
        },
        "Empty": {"type": "object", "additionalProperties": False, "maxProperties": 0},
        "AlertConfig": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "rules": {"type": "object"},
                "window_seconds": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600},
                "window_buckets": {"type": "integer", "minimum": 1, "maximum": 1000},
                "min_samples": {"type": "integer", "minimum": 1, "maximum": 1000000},
                "min_dwell_seconds": {"type": "number", "minimum": 0, "maximum": 3600},
                "evaluate_interval_seconds": {"type": "number", "minimum": 0.01, "maximum": 60},
            },
        },
        "Alerts": {
            "type": "object",
            "required": ["config", "status"],
            "properties": {"config": object_any, "status": object_any},
        },
        "SnapshotSaved": {
            "type": "object", "required": ["at_sequence"], "properties": {"at_sequence": {"type": "integer"}},
        },
    }


def openapi_document() -> dict[str, Any]:
    """The document (a fresh dict each call)."""
    event_types = {"type": "string", "enum": [t.value for t in EventType]}
    wait = _query("wait", {"type": "number", "minimum": 0, "maximum": MAX_WAIT_SECONDS},
                  "seconds to wait for an escalated command's decision")
    pair_step_errors = (400, 401, 403, 404, 409, 413, 415, 503)
    pair_ok = {200: ("The pair session after the step", _ref("PairSession"))}

    def pair_step(summary: str, body: str | None) -> dict[str, Any]:
        op: dict[str, Any] = {
            "summary": summary, "security": _SECURED, "parameters": [_path("pair_id")],
            "responses": _responses(pair_ok, pair_step_errors),
        }
        op["requestBody"] = {"required": body is not None, "content": _content(_ref(body or "Empty"))}
        return {"post": op}

    return {
        "openapi": "3.1.0",
        "info": {
            "title": "lighthouse",
            "version": __version__,
            "description": "Durable event store and ValidationBridge of a multi-agent coordination platform.",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "issued by `lighthouse token --agent ID --role ROLE`"}},
            "schemas": _schemas(),
        },
        "paths": {
            "/events": {
                "post": {
                    "summary": "Append one event",
                    "security": _SECURED,
                    "parameters": [_query("expected_version", {"type": "integer", "minimum": 0,
                                                               "maximum": 2**63 - 1},
                                          "the aggregate's current version; 409 if it differs")],
                    "requestBody": _body(_ref("NewEvent")),
                    "responses": _responses(
                        {201: ("Stored", _ref("Event")), 200: ("Already stored (idempotent retry)", _ref("Event"))},
                        _WRITE_ERRORS,
                    ),
                },
                "get": {
                    "summary": "Query events in sequence order, one page at a time",
                    "security": _SECURED,
                    "parameters": [
                        _list_query("event_types", event_types, "any of these types"),
                        _list_query("aggregate_ids", _ID, "any of these aggregates"),
                        _list_query("source_agents", _ID, "written by any of these agents"),
                        _query("correlation_id", {"type": "string", "minLength": 1, "maxLength": 4096}),
                        _query("causation_id", {"type": "string", "minLength": 1, "maxLength": 4096}),
                        _query("from_sequence", {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}),
                        _query("to_sequence", {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}),
                        _query("recorded_after", {"type": "number", "minimum": -1e15, "maximum": 1e15}),
                        _query("recorded_before", {"type": "number", "minimum": -1e15, "maximum": 1e15}),
                        _query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_QUERY_LIMIT}),
                        _query("cursor", {"type": "string", "minLength": 1, "maxLength": 4096},
                               "next_cursor of the previous page (same filter and order)"),
                        _query("order", {"type": "string", "enum": ["asc", "desc"]}),
                    ],
                    "responses": _responses({200: ("A page", _ref("QueryResult"))}, _READ_ERRORS),
                },
            },
            "/events/batch": {
                "post": {
                    "summary": "Append 1..1000 events atomically",
                    "security": _SECURED,
                    "requestBody": _body(_ref("Batch")),
                    "responses": _responses(
                        {201: ("Stored", _ref("EventList")), 200: ("Already stored (idempotent retry)", _ref("EventList"))},
                        _WRITE_ERRORS,
                    ),
                },
            },
            "/events/{event_id}": {
                "get": {
                    "summary": "One event by id",
                    "security": _SECURED,
                    "parameters": [_path("event_id", _ID)],
                    "responses": _responses({200: ("The event", _ref("Event"))}, (*_READ_ERRORS, 404)),
                },
            },
            "/health": {
                "get": {
                    "summary": "200 while writes are accepted, 503 (Retry-After) otherwise",
                    "responses": _responses(
                        {200: ("Healthy or degraded", _ref("Health"))}, (400, 503)
                    ) | {"503": {"description": "Read-only or failed", "content": _content(_ref("Health")),
                                 "headers": {"Retry-After": {"schema": {"type": "string", "pattern": "^[0-9]+$"}}}}},
                },
            },
            "/health/detailed": {
                "get": {
                    "summary": "Store health, alert triggers, statistics (admin)",
                    "security": _SECURED,
                    "responses": _responses({200: ("Details", _ref("HealthDetailed"))}, _READ_ERRORS),
                },
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {
                        "200": {"description": "text exposition format",
                                "content": {"text/plain": {"schema": {"type": "string"}}}},
                        **{k: v for k, v in _responses({}, (400,)).items()},
                    },
                },
            },
            "/validate": {
                "post": {
                    "summary": "Propose a tool call to the ValidationBridge",
                    "security": _SECURED,
                    "parameters": [wait],
                    "requestBody": _body(_ref("Proposal")),
                    "responses": _responses({200: ("Decision or escalation", _ref("Command"))}, _WRITE_ERRORS),
                },
            },
            "/validate/{command_id}": {
                "get": {
                    "summary": "A command's state (its proposer, experts and admins)",
                    "security": _SECURED,
                    "parameters": [_path("command_id"), wait],
                    "responses": _responses({200: ("The command", _ref("Command"))}, (*_READ_ERRORS, 404)),
                },
            },
            "/validate/{command_id}/decision": {
                "post": {
                    "summary": "An expert's decision on an escalated command",
                    "security": _SECURED,
                    "parameters": [_path("command_id")],
                    "requestBody": _body(_ref("Decision")),
                    "responses": _responses({200: ("The decided command", _ref("Command"))},
                                            (400, 401, 403, 404, 409, 413, 415, 503)),
                },
            },
            "/pair": {
                "post": {
                    "summary": "Request a pair session",
                    "security": _SECURED,
                    "requestBody": _body(_ref("PairRequest")),
                    "responses": _responses({201: ("Requested", _ref("PairSession"))}, _WRITE_ERRORS),
                },
            },
            "/pair/{pair_id}": {
                "get": {
                    "summary": "A pair session",
                    "security": _SECURED,
                    "parameters": [_path("pair_id")],
                    "responses": _responses({200: ("The session", _ref("PairSession"))}, (*_READ_ERRORS, 404)),
                },
            },
            "/pair/{pair_id}/accept": pair_step("Accept a pair request (the partner)", None),
            "/pair/{pair_id}/suggest": pair_step("Suggest a change (a participant)", "Suggestion"),
            "/pair/{pair_id}/review": pair_step("Review the outcome; completes the session (the requester)", "Review"),
            "/pair/{pair_id}/complete": pair_step("Complete without a review (a participant)", None),
            "/pair/{pair_id}/cancel": pair_step("Cancel (a participant)", "Cancel"),
            "/bridge/state": {
                "get": {
                    "summary": "The bridge's projected state (experts and admins)",
                    "security": _SECURED,
                    "parameters": [_query("view", {"type": "string", "enum": ["full", "summary"]})],
                    "responses": _responses({200: ("State", {"type": "object"})}, _READ_ERRORS),
                },
            },
            "/bridge/snapshot": {
                "post": {
                    "summary": "Snapshot the bridge's state now (admin)",
                    "security": _SECURED,
                    "responses": _responses({201: ("Saved", _ref("SnapshotSaved"))}, (400, 401, 403, 503)),
                },
            },
            "/admin/alerts": {
                "get": {
                    "summary": "Alert thresholds and current levels (admin)",
                    "security": _SECURED,
                    "responses": _responses({200: ("Alerts", _ref("Alerts"))}, _READ_ERRORS),
                },
                "put": {
                    "summary": "Replace the alert configuration (admin)",
                    "security": _SECURED,
                    "requestBody": _body(_ref("AlertConfig")),
                    "responses": _responses({200: ("Alerts", _ref("Alerts"))}, (400, 401, 403, 413, 415)),
                },
            },
        },
    }
