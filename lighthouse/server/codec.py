"""Request and response bodies: JSON by default, MessagePack when the client sends or asks for it.

Decoding is strict so that whatever is accepted can be returned in either encoding: JSON must not
carry NaN/Infinity (not JSON), MessagePack must not carry binary, extension types or non-string
map keys (no JSON equivalent). Bodies are read with a size cap while streaming, so an oversized
request is refused before it is held in memory.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass
from collections.abc import Awaitable, Callable
from typing import Any, Final

import msgpack
import msgspec
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from lighthouse.server.problems import ApiError

__all__ = [
    "JSON", "MSGPACK", "Codec", "check_declared_length", "check_nesting_at", "codec_for", "decode_body", "integral",
    "is_json", "read_body", "receive_body", "response_codec",
]

JSON_TYPE: Final[str] = "application/json"
MSGPACK_TYPES: Final[frozenset[str]] = frozenset({"application/msgpack", "application/x-msgpack", "application/vnd.msgpack"})
_MAX_DEPTH: Final[int] = 64
_CONTAINERS: Final[frozenset[type]] = frozenset((dict, list))  # what msgspec's JSON decoder nests


@dataclass(frozen=True, slots=True)
class Codec:
    name: str
    media_type: str

    def encode(self, value: Any) -> bytes:
        if self.name == "msgpack":
            return msgpack.packb(value, use_bin_type=True, default=_msgpack_default)
        try:
            return _JSON_ENCODER.encode(value).encode()
        except ValueError:
            # Only events written through the library (not the API) can hold non-finite floats.
            return json.dumps(_finite(value), separators=(",", ":"), default=_json_default).encode()

    def response(self, value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        return Response(self.encode(value), status_code=status, media_type=self.media_type, headers=headers)


JSON: Final[Codec] = Codec("json", JSON_TYPE)
MSGPACK: Final[Codec] = Codec("msgpack", "application/msgpack")


def _json_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


#: The encoder ``json.dumps`` would build on every call with these options, built once.
_JSON_ENCODER: Final[json.JSONEncoder] = json.JSONEncoder(separators=(",", ":"), allow_nan=False,
                                                          default=_json_default)


_FAST_JSON_DECODE: Final[Callable[[bytes], Any]] = msgspec.json.Decoder().decode


def _msgpack_default(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        return list(value)
    return str(value)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def integral(value: Any) -> Any:
    """``3.0`` as ``3``: JSON has one number type, and JSON Schema counts 3.0 as an integer."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    return value


def _media_type(header: str | None) -> str:
    return (header or "").split(";", 1)[0].strip().lower()


def response_codec(request: Any) -> Codec:
    """MessagePack if the client accepts it (or sent it and did not ask otherwise); JSON otherwise.

    Unsupported ``Accept`` values get JSON rather than a 406: every client can read an error in JSON.
    """
    return codec_for(request.headers.get("accept"), request.headers.get("content-type"))


def codec_for(accept: str | None, content_type: str | None) -> Codec:
    """``response_codec`` from the two header values it looks at."""
    if accept:
        for part in accept.split(","):
            kind = _media_type(part)
            if kind in MSGPACK_TYPES:
                return MSGPACK
            if kind == JSON_TYPE:
                return JSON
    if content_type and _media_type(content_type) in MSGPACK_TYPES:
        return MSGPACK
    return JSON


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing (413) anything over ``limit`` bytes before buffering it."""
    check_declared_length(request.headers.get("content-length"), limit)
    chunks: list[bytes] = []
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise ApiError(413, "body_too_large", f"the body exceeds the limit of {limit} bytes", limit=limit)
            chunks.append(chunk)
    except ClientDisconnect:
        raise ApiError(400, "client_disconnected", "the client went away before sending the whole body") from None
    return b"".join(chunks)


async def receive_body(receive: Callable[[], Awaitable[dict[str, Any]]], content_length: str | None,
                       limit: int) -> bytes:
    """``read_body`` straight from an ASGI ``receive``, for handlers that run without a Starlette request."""
    check_declared_length(content_length, limit)
    chunks: list[bytes] = []
    received = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ApiError(400, "client_disconnected", "the client went away before sending the whole body")
        chunk = message.get("body", b"")
        received += len(chunk)
        if received > limit:
            raise ApiError(413, "body_too_large", f"the body exceeds the limit of {limit} bytes", limit=limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def check_declared_length(declared: str | None, limit: int) -> None:
    """Refuse a body whose ``Content-Length`` is not an integer (400) or over ``limit`` (413) before reading it."""
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise ApiError(400, "malformed_body", "Content-Length is not an integer") from None
        if size > limit:
            raise ApiError(413, "body_too_large", f"the body is {size} bytes; the limit is {limit}", limit=limit)


def decode_body(raw: bytes, content_type: str | None) -> Any:
    """Parse a body as its Content-Type says (JSON when absent); 400/415 with a reason otherwise."""
    kind = _media_type(content_type)
    if not raw:
        raise ApiError(400, "malformed_body", "the request body is empty")
    if kind in MSGPACK_TYPES:
        return _decode_msgpack(raw)
    if is_json(kind):
        return _decode_json(raw)
    raise ApiError(
        415,
        "unsupported_media_type",
        f"Content-Type {kind!r} is not supported; send application/json or application/msgpack",
    )


def is_json(content_type: str | None) -> bool:
    """Whether ``decode_body`` reads a body with this Content-Type as JSON (absent: JSON)."""
    kind = _media_type(content_type)
    return kind in ("", JSON_TYPE) or kind.endswith("+json")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _decode_json(raw: bytes) -> Any:
    """msgspec first: it accepts a subset of what the stdlib accepts (no BOM or other encodings, no lone
    surrogates, no NaN/Infinity or numbers out of float range, no integers over its range) and gives the
    same values, as ``test_json_codec`` checks; whatever it refuses is judged (and explained) by the stdlib."""
    try:
        value = _FAST_JSON_DECODE(raw)
    except (msgspec.DecodeError, RecursionError):
        return _decode_json_by_stdlib(raw)
    _check_nesting(value)
    return value


def _decode_json_by_stdlib(raw: bytes) -> Any:
    try:
        value = json.loads(raw, parse_constant=_reject_constant)
    except RecursionError:
        raise ApiError(400, "malformed_body", "the JSON body is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "malformed_body", f"the body is not valid JSON: {exc}") from None
    _check_depth(value)
    return value


def _refuse_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"MessagePack extension type {code} is not supported")


def _decode_msgpack(raw: bytes) -> Any:
    try:
        value = msgpack.unpackb(raw, raw=False, strict_map_key=True, ext_hook=_refuse_ext, use_list=True)
    except msgpack.ExtraData:
        raise ApiError(400, "malformed_body", "the MessagePack body has trailing bytes") from None
    except (ValueError, TypeError, msgpack.UnpackException, msgpack.StackError, RecursionError) as exc:
        raise ApiError(400, "malformed_body", f"the body is not valid MessagePack: {exc}") from None
    _check_depth(value)
    return value


def _check_depth(value: Any) -> None:
    """Refuse binary values, non-finite floats and absurd nesting (iteratively: no recursion limit games).

    Every request body goes through here, so strings and integers (most of any event) are passed over
    without a stack entry; a container at the depth limit with any child at all is already too deep.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    push, pop = stack.append, stack.pop
    while stack:
        item, depth = pop()
        if depth > _MAX_DEPTH:
            raise _too_deep()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            _check_scalar(item)
            continue
        if children and depth >= _MAX_DEPTH:
            raise _too_deep()
        for child in children:
            kind = type(child)
            if kind is str or kind is int:
                continue
            if kind is float:
                _check_scalar(child)
            else:
                push((child, depth + 1))


def _check_nesting(value: Any) -> None:
    """``_check_depth`` for what msgspec decoded from JSON, which holds no binary and no non-finite number
    (it refuses 1e400): only the nesting is left to check, so scalars are passed over without a look."""
    if type(value) is dict or type(value) is list:
        check_nesting_at([value], 0)


def check_nesting_at(containers: list[Any], depth: int) -> None:
    """Refuse (400) a body in which any of ``containers``, each ``depth`` levels below the body's root,
    nests too deeply: the nesting check of JSON that msgspec decoded into typed fields around them."""
    # Level by level: the containers one level down, gathered in one comprehension per level (a batch body
    # is four levels deep however many events it holds): two thirds of the cost of a stack of (item, depth) pairs.
    level = containers
    while level:
        if depth >= _MAX_DEPTH and any(level):
            raise _too_deep()
        level = [child for item in level for child in (item.values() if type(item) is dict else item)
                 if type(child) in _CONTAINERS]
        depth += 1


def _too_deep() -> ApiError:
    return ApiError(400, "malformed_body", f"the body is nested deeper than {_MAX_DEPTH} levels")


def _check_scalar(item: Any) -> None:
    if isinstance(item, (bytes, bytearray)):
        raise ApiError(400, "malformed_body", "binary values are not supported; encode them as base64 strings")
    if isinstance(item, float) and not math.isfinite(item):
        raise ApiError(400, "malformed_body", "NaN and infinite numbers are not supported")
