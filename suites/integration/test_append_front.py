"""The lean append path answers exactly as the Starlette routes it bypasses: same status, body, headers, metrics.

Two apps on two fresh stores get the same requests, one with ``AppendFront`` and one without it (the
router's ``append_event``/``append_batch`` answer there). Store-assigned values (``recorded_at``, the
response time) are the only differences allowed.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from starlette.testclient import TestClient

from lighthouse.server.app import create_app
from lighthouse.server.append_front import AppendFront
from lighthouse.server.auth import Role, TokenAuthority
from lighthouse.server.settings import ServerSettings

SECRET = secrets.token_bytes(32)
AUTHORITY = TokenAuthority(SECRET)
AGENT = AUTHORITY.issue("front-agent", Role.AGENT)
EVENT_ID = str(uuid.uuid4())


def _event(**fields: Any) -> dict[str, Any]:
    return {"event_id": EVENT_ID, "event_type": "custom", "aggregate_id": "front:1", "timestamp": 1_700_000_000.0,
            "data": {"n": 1}, **fields}


def _bearer(token: str = AGENT) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# (method, path, keyword arguments for TestClient.request); run in order against both apps.
REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("/events", {"json": _event(), "headers": _bearer()}),
    ("/events", {"json": _event(), "headers": _bearer()}),  # idempotent retry: 200
    ("/events", {"json": _event(data={"n": 2}), "headers": _bearer()}),  # same id, other content: 409
    ("/events", {"json": _event(event_id="other-1"), "headers": {}}),  # 401
    ("/events", {"json": _event(event_id="other-2"), "headers": _bearer("lh1.forged.mac")}),
    ("/events", {"json": _event(event_id="other-3", event_type="system_started"), "headers": _bearer()}),  # 403
    ("/events", {"json": _event(event_id="lh:stolen"), "headers": _bearer()}),
    ("/events", {"json": _event(event_id="other-4", sequence=5), "headers": _bearer()}),
    ("/events", {"content": b"{not json", "headers": {**_bearer(), "Content-Type": "application/json"}}),
    ("/events", {"content": b"<xml/>", "headers": {**_bearer(), "Content-Type": "application/xml"}}),
    ("/events", {"content": b"", "headers": _bearer()}),
    ("/events", {"content": b"x" * (3 * 1024 * 1024), "headers": {**_bearer(), "Content-Type": "application/json"}}),
    ("/events", {"content": msgpack.packb(_event(event_id="packed-1")),
                 "headers": {**_bearer(), "Content-Type": "application/msgpack"}}),
    ("/events", {"json": _event(event_id="json-in-msgpack-out"), "headers": {**_bearer(), "Accept": "application/msgpack"}}),
    ("/events/batch", {"json": {"events": [_event(event_id=f"b-{i}") for i in range(3)]}, "headers": _bearer()}),
    ("/events/batch", {"json": {"events": [_event(event_id=f"b-{i}") for i in range(3)]}, "headers": _bearer()}),
    ("/events/batch", {"json": {"events": []}, "headers": _bearer()}),
    ("/events/batch", {"json": {"events": [_event(event_id="c-1")], "colour": 1}, "headers": _bearer()}),
    ("/events/batch", {"json": {"events": [_event(event_id="c-2")] * 2}, "headers": _bearer()}),
    ("/events/batch", {"json": [], "headers": _bearer()}),
]


async def _unreachable(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 599, "headers": []})
    await send({"type": "http.response.body", "body": b"the router answered an append"})


def _client(tmp: Path, lean: bool, *, router_appends: bool = True) -> Iterator[TestClient]:
    app = create_app(tmp, secret=SECRET, settings=ServerSettings())
    assert any(m.cls is AppendFront for m in app.user_middleware), "the server must install the lean path"
    if not lean:
        app.user_middleware = [m for m in app.user_middleware if m.cls is not AppendFront]
    if not router_appends:  # proves the lean path, not the router, answered
        for route in app.router.routes:
            if getattr(route, "path", None) in ("/events", "/events/batch") and "POST" in (route.methods or ()):
                route.app = _unreachable
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture()
def clients(tmp_path: Path) -> Iterator[tuple[TestClient, TestClient]]:
    lean_iter = _client(tmp_path / "lean", True, router_appends=False)
    routed_iter = _client(tmp_path / "routed", False)
    lean, routed = next(lean_iter), next(routed_iter)
    yield lean, routed
    for rest in (lean_iter, routed_iter):
        next(rest, None)


def _comparable(response: Any) -> tuple[int, Any, dict[str, str]]:
    media = response.headers.get("content-type", "")
    body = msgpack.unpackb(response.content) if "msgpack" in media else response.json()
    for event in body.get("events", []) if isinstance(body, dict) and isinstance(body.get("events"), list) else [body]:
        if isinstance(event, dict):
            event.pop("recorded_at", None)
    assert int(response.headers["content-length"]) == len(response.content)
    headers = {k: v for k, v in response.headers.items() if k not in ("x-response-time-ms", "content-length")}
    return response.status_code, body, headers


def test_the_lean_path_answers_as_the_routes_do(clients: tuple[TestClient, TestClient]) -> None:
    lean, routed = clients
    statuses = []
    for path, kwargs in REQUESTS:
        ours, theirs = lean.post(path, **kwargs), routed.post(path, **kwargs)
        assert "x-response-time-ms" in ours.headers and "x-response-time-ms" in theirs.headers
        assert _comparable(ours) == _comparable(theirs), (path, kwargs.get("headers"))
        statuses.append(ours.status_code)
    assert statuses == [201, 200, 409, 401, 401, 403, 400, 400, 400, 415, 400, 413, 201, 201, 201, 200, 400, 400, 400,
                        400]
    lean_metrics = lean.get("/metrics", headers=_bearer()).text
    assert 'lighthouse_http_requests_total{method="POST",route="/events",status="201"} 3.0' in lean_metrics
    assert 'lighthouse_errors_total{code="missing_token"} 1.0' in lean_metrics


def test_requests_the_lean_path_does_not_take_still_reach_the_router(tmp_path: Path) -> None:
    clients = _client(tmp_path, True)
    lean = next(clients)
    first = lean.post("/events", json=_event(), headers=_bearer())
    stale = lean.post("/events", params={"expected_version": "0"}, json=_event(event_id="v-1"), headers=_bearer())
    assert (first.status_code, stale.status_code, stale.json()["error"]) == (201, 409, "concurrency_conflict")
    unknown = lean.post("/events/batch", params={"colour": "red"}, json={"events": [_event()]}, headers=_bearer())
    assert unknown.status_code == 400 and unknown.json()["error"] == "invalid_query"
    assert lean.put("/events", headers=_bearer()).status_code == 405
    next(clients, None)
