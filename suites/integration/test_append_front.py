"""The lean append path answers exactly as the Starlette stack and routes it bypasses: same status,
body, headers, metrics, access lines and admission budget.

Two apps on two fresh stores get the same requests, one with ``AppendFront`` and one without it (the
middleware stack and the router's ``append_event``/``append_batch`` answer there). Store-assigned values (``recorded_at``, the
response time) are the only differences allowed.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from starlette.testclient import TestClient

from lighthouse.server.app import create_app
from lighthouse.server import append_front
from lighthouse.server.append_front import AppendFront
from lighthouse.server.event_intake import quick_batch, quick_single
from lighthouse.server.auth import Role, TokenAuthority
from lighthouse.server.settings import ServerSettings

SECRET = secrets.token_bytes(32)
AUTHORITY = TokenAuthority(SECRET)
AGENT = AUTHORITY.issue("front-agent", Role.AGENT)
EVENT_ID = str(uuid.uuid4())


def _event(**fields: Any) -> dict[str, Any]:
    return {"event_id": EVENT_ID, "event_type": "custom", "aggregate_id": "front:1", "timestamp": 1_700_000_000.0,
            "data": {"n": 1}, **fields}


def _nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


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
    # typed JSON batches (quick_batch) and the bodies it leaves to the general path
    ("/events/batch", {"json": {"events": [_event(event_id="d-1", aggregate_id="front:9")],
                                "expected_versions": {"front:9": 0}}, "headers": _bearer()}),
    ("/events/batch", {"json": {"events": [_event(event_id="d-2", aggregate_id="front:9")],
                                "expected_versions": {"front:9": 0}}, "headers": _bearer()}),  # 409
    ("/events/batch", {"json": {"events": [_event(event_id="d-3")], "expected_versions": {"front:1": "x"}},
                       "headers": _bearer()}),
    ("/events/batch", {"json": {"events": [_event(event_id="d-4"), _event(event_id="lh:d-5")]}, "headers": _bearer()}),
    ("/events/batch", {"json": {"events": [_event(event_id="d-6", event_type="system_started")]},
                       "headers": _bearer()}),
    # typed JSON single events (quick_single) and the bodies it leaves to the general path
    ("/events", {"json": _event(event_id="s-1", timestamp=1_700_000_001), "headers": _bearer()}),  # an integer
    ("/events", {"json": _event(event_id="s-2", timestamp=True), "headers": _bearer()}),
    ("/events", {"json": _event(event_id="s-3", data=None, metadata={"k": [1, {"x": None}]}), "headers": _bearer()}),
    ("/events", {"content": json.dumps(_event(event_id="s-4")).encode()[:-1] + b', "event_type": "system_started"}',
                 "headers": {**_bearer(), "Content-Type": "application/json"}}),  # the last of a repeated key counts
    ("/events", {"content": json.dumps(_event(event_id="s-5", data={"k": _nested(64)})).encode(),
                 "headers": {**_bearer(), "Content-Type": "application/json"}}),
    ("/events", {"content": json.dumps(_event(event_id="s-6")).encode(),
                 "headers": {**_bearer(), "Content-Type": "application/vnd.lighthouse+json; charset=utf-8"}}),
]


async def _unreachable(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 599, "headers": []})
    await send({"type": "http.response.body", "body": b"the router answered an append"})


def _client(tmp: Path, lean: bool, *, router_appends: bool = True) -> Iterator[TestClient]:
    app = create_app(tmp, secret=SECRET, settings=ServerSettings())
    assert isinstance(app.front, AppendFront), "the server must install the lean path"
    if not lean:
        app.front = None
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
    headers = {k: v for k, v in response.headers.items()
               if k not in ("x-response-time-ms", "server-timing", "content-length")}
    return response.status_code, body, headers


def test_the_lean_path_answers_as_the_routes_do(clients: tuple[TestClient, TestClient],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    lean, routed = clients
    built: list[int] = []  # the typed batches (their sizes) and single events (0) the lean path built

    def counted(*args: Any, **kwargs: Any) -> Any:
        result = quick_batch(*args, **kwargs)
        built.extend([] if result is None else [len(result[0])])
        return result

    def counted_single(*args: Any, **kwargs: Any) -> Any:
        result = quick_single(*args, **kwargs)
        built.extend([] if result is None else [0])
        return result

    monkeypatch.setattr(append_front, "quick_batch", counted)
    monkeypatch.setattr(append_front, "quick_single", counted_single)
    statuses = []
    for path, kwargs in REQUESTS:
        ours, theirs = lean.post(path, **kwargs), routed.post(path, **kwargs)
        assert "x-response-time-ms" in ours.headers and "x-response-time-ms" in theirs.headers
        for answer in (ours, theirs):  # the same time, in the W3C header load generators read
            assert answer.headers["server-timing"] == f"app;dur={answer.headers['x-response-time-ms']}"
        assert _comparable(ours) == _comparable(theirs), (path, kwargs.get("headers"))
        statuses.append(ours.status_code)
    assert statuses == [201, 200, 409, 401, 401, 403, 400, 400, 400, 415, 400, 413, 201, 201, 201, 200, 400, 400, 400,
                        400, 201, 409, 400, 400, 403, 201, 400, 201, 403, 400, 201]
    # the common single events (0) and batches (one repeats an id: the store refuses it)
    assert built == [0, 0, 0, 0, 3, 3, 2, 1, 1, 1, 0, 0, 0], built
    lean_metrics = lean.get("/metrics", headers=_bearer()).text
    assert 'lighthouse_http_requests_total{method="POST",route="/events",status="201"} 6.0' in lean_metrics
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


def test_the_lean_path_counts_against_the_same_budget_and_writes_the_same_access_lines(
        clients: tuple[TestClient, TestClient], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="lighthouse.access")
    seen: list[tuple[list[tuple[int, Any]], list[str]]] = []
    for client in clients:
        ctx = client.app.state.ctx  # type: ignore[attr-defined]
        caplog.clear()
        answers = [client.post("/events", json=_event(event_id="budget-1"), headers=_bearer()),
                   client.post("/events", json=_event(event_id="budget-2"), headers={})]
        assert ctx.admission.inflight == {}, "every admitted request gave its place back"
        ctx.admission.inflight["front-agent"] = ctx.settings.max_requests_per_principal  # its budget is held
        answers.append(client.post("/events/batch", json={"events": [_event(event_id="budget-3")]}, headers=_bearer()))
        del ctx.admission.inflight["front-agent"]
        assert ctx.admission.shed == 1
        lines = [re.sub(r" [0-9.]+ms$", "", r.getMessage()) for r in caplog.records if r.name == "lighthouse.access"]
        seen.append(([(a.status_code, a.json()) for a in answers], lines))
        assert [a.status_code for a in answers] == [201, 401, 429]
        assert lines == ["POST /events 201 front-agent", "POST /events 401 -", "POST /events/batch 429 front-agent"]
    lean, routed = seen
    lean[0][0][1].pop("recorded_at")
    routed[0][0][1].pop("recorded_at")
    assert lean == routed


def _append_scope(body: bytes) -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
            "path": "/events", "raw_path": b"/events", "query_string": b"", "root_path": "",
            "headers": [(b"authorization", f"Bearer {AGENT}".encode()), (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode())],
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80)}


def test_the_access_line_names_the_status_that_was_sent_when_the_body_cannot_be(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A client gone after the head: the line says 201 (the head sent, the metrics' count), not 500."""
    caplog.set_level(logging.INFO, logger="lighthouse.access")
    app = create_app(tmp_path, secret=SECRET, settings=ServerSettings())
    body = json.dumps(_event(event_id="head-only")).encode()

    async def post_to_a_client_that_leaves() -> list[int]:
        messages = [{"type": "http.request", "body": body, "more_body": False}]
        heads: list[int] = []

        async def receive() -> dict[str, Any]:
            return messages.pop()

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body":
                raise OSError("the client went away")
            heads.append(message["status"])

        with pytest.raises(OSError, match="went away"):
            await app(_append_scope(body), receive, send)
        return heads

    with TestClient(app) as client:
        assert client.portal is not None
        assert client.portal.call(post_to_a_client_that_leaves) == [201]
        assert app.state.ctx.admission.inflight == {}
    lines = [re.sub(r" [0-9.]+ms$", "", r.getMessage()) for r in caplog.records if r.name == "lighthouse.access"]
    assert lines == ["POST /events 201 front-agent"]


def test_middleware_an_embedder_adds_sees_appends_too(tmp_path: Path) -> None:
    app = create_app(tmp_path, secret=SECRET, settings=ServerSettings())
    seen: list[str] = []

    class Probe:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                seen.append(f"{scope['method']} {scope['path']}")
            await self.inner(scope, receive, send)

    app.add_middleware(Probe)
    assert app.front is None
    with TestClient(app) as client:
        assert client.post("/events", json=_event(), headers=_bearer()).status_code == 201
        assert client.post("/events/batch", json={"events": [_event(event_id="probe-1")]},
                           headers=_bearer()).status_code == 201
    assert seen == ["POST /events", "POST /events/batch"]
