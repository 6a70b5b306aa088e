"""ValidationBridge endpoints: ``POST /validate``, expert decisions, pair sessions, ``GET /bridge/state``.

Who is acting always comes from the token: an agent proposes only as itself, an expert decides only
as itself, and only participants move a pair session along.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from lighthouse.bridge.bridge import ValidationBridge
from lighthouse.bridge.errors import BridgeInvalid
from lighthouse.server.auth import Role
from lighthouse.server.codec import decode_body, integral, read_body, response_codec
from lighthouse.server.context import ServerContext, context_of, endpoint
from lighthouse.server.openapi import MAX_WAIT_SECONDS
from lighthouse.server.params import QueryReader
from lighthouse.server.problems import ApiError

__all__ = [
    "bridge_snapshot",
    "bridge_state",
    "command_status",
    "decide",
    "pair_accept",
    "pair_cancel",
    "pair_complete",
    "pair_request",
    "pair_review",
    "pair_status",
    "pair_suggest",
    "validate",
]


def _bridge(ctx: ServerContext) -> ValidationBridge:
    if ctx.bridge is None:
        raise ApiError(503, "bridge_unavailable", "the ValidationBridge is not running", retryable=True)
    return ctx.bridge


async def _body(request: Request, ctx: ServerContext, fields: dict[str, bool]) -> dict[str, Any]:
    """The JSON/MessagePack object body, with only the named fields (True: required)."""
    data = await read_body(request, ctx.settings.max_small_body_bytes)
    if not data and not any(fields.values()):
        return {name: None for name in fields}  # every field optional: an empty body is fine
    raw = decode_body(data, request.headers.get("content-type"))
    if not isinstance(raw, Mapping):
        raise BridgeInvalid("the body must be an object")
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise BridgeInvalid(f"unknown fields {unknown}", fields=unknown)
    missing = sorted(name for name, required in fields.items() if required and name not in raw)
    if missing:
        raise BridgeInvalid(f"missing fields {missing}", fields=missing)
    return {name: raw.get(name) for name in fields}


def _respond(request: Request, value: Any, status: int = 200) -> Response:
    return response_codec(request).response(value, status=status)


@endpoint("/validate")
async def validate(request: Request) -> Response:
    """Propose a tool call; the answer is the decision (approved / rejected) or the escalation."""
    ctx = context_of(request)
    principal = ctx.principal(request)
    reader = QueryReader(request.query_params, scalars=("wait",))
    wait = reader.number("wait", minimum=0.0, bound=MAX_WAIT_SECONDS) or 0.0
    body = await _body(request, ctx, {
        "tool": True, "tool_input": True, "session_id": False, "command_id": False, "correlation_id": False,
        "causation_id": False, "preferred_expert": False,
    })
    ctx.admit_write()
    bridge = _bridge(ctx)
    command = await bridge.submit(principal.agent_id, **body)
    if wait and command["status"] == "escalated":
        command = await bridge.wait_decision(command["command_id"], wait)
    return _respond(request, command)


@endpoint("/validate/{command_id}")
async def command_status(request: Request) -> Response:
    """A command's state; ``?wait=S`` waits up to S seconds for its decision."""
    ctx = context_of(request)
    principal = ctx.principal(request)
    reader = QueryReader(request.query_params, scalars=("wait",))
    wait = reader.number("wait", minimum=0.0, bound=MAX_WAIT_SECONDS) or 0.0
    bridge = _bridge(ctx)
    command_id = request.path_params["command_id"]
    command = bridge.command(command_id)
    if command["agent_id"] != principal.agent_id and not principal.role.includes(Role.EXPERT):
        raise ApiError(403, "forbidden", "agents see only their own commands")
    if wait:
        command = await bridge.wait_decision(command_id, wait)
    return _respond(request, command)


@endpoint("/validate/{command_id}/decision")
async def decide(request: Request) -> Response:
    ctx = context_of(request)
    principal = ctx.principal(request, Role.EXPERT)
    QueryReader(request.query_params)
    body = await _body(request, ctx, {"decision": True, "reason": False})
    ctx.admit_write()
    command = await _bridge(ctx).decide(
        principal.agent_id, request.path_params["command_id"], body["decision"], body["reason"]
    )
    return _respond(request, command)


@endpoint("/pair")
async def pair_request(request: Request) -> Response:
    ctx = context_of(request)
    principal = ctx.principal(request)
    QueryReader(request.query_params)
    body = await _body(request, ctx, {"mode": True, "task": True, "partner": False, "pair_id": False,
                                      "causation_id": False})
    ctx.admit_write()
    pair = await _bridge(ctx).pair_request(principal.agent_id, **body)
    return _respond(request, pair, status=201)


@endpoint("/pair/{pair_id}")
async def pair_status(request: Request) -> Response:
    ctx = context_of(request)
    ctx.principal(request)
    QueryReader(request.query_params)
    return _respond(request, _bridge(ctx).pair(request.path_params["pair_id"]))


async def _pair_step(request: Request, fields: dict[str, bool], step: str, integers: tuple[str, ...] = ()) -> Response:
    ctx = context_of(request)
    principal = ctx.principal(request)
    QueryReader(request.query_params)
    body = await _body(request, ctx, fields)
    for name in integers:
        body[name] = integral(body[name])
    ctx.admit_write()
    bridge = _bridge(ctx)
    method = getattr(bridge, f"pair_{step}")
    pair = await method(principal.agent_id, request.path_params["pair_id"], **body)
    return _respond(request, pair)


@endpoint("/pair/{pair_id}/accept")
async def pair_accept(request: Request) -> Response:
    return await _pair_step(request, {}, "accept")


@endpoint("/pair/{pair_id}/suggest")
async def pair_suggest(request: Request) -> Response:
    return await _pair_step(request, {"suggestion": True, "suggestion_id": False, "kind": False}, "suggest")


@endpoint("/pair/{pair_id}/review")
async def pair_review(request: Request) -> Response:
    return await _pair_step(request, {"decision": True, "feedback": False, "accepted_suggestions": False}, "review",
                            integers=("accepted_suggestions",))


@endpoint("/pair/{pair_id}/complete")
async def pair_complete(request: Request) -> Response:
    return await _pair_step(request, {}, "complete")


@endpoint("/pair/{pair_id}/cancel")
async def pair_cancel(request: Request) -> Response:
    return await _pair_step(request, {"reason": False}, "cancel")


@endpoint("/bridge/state")
async def bridge_state(request: Request) -> Response:
    """The whole projection (``?view=summary`` for counts only). Experts and admins only."""
    ctx = context_of(request)
    ctx.principal(request, Role.EXPERT)
    reader = QueryReader(request.query_params, scalars=("view",))
    view = reader.choice("view", ("full", "summary"), "full")
    bridge = _bridge(ctx)
    return _respond(request, bridge.projection.summary() if view == "summary" else bridge.state())


@endpoint("/bridge/snapshot")
async def bridge_snapshot(request: Request) -> Response:
    """Save the bridge's state as a snapshot now (admin)."""
    ctx = context_of(request)
    ctx.principal(request, Role.ADMIN)
    QueryReader(request.query_params)
    ctx.admit_write()
    at = await _bridge(ctx).save_snapshot()
    return _respond(request, {"at_sequence": at}, status=201)
