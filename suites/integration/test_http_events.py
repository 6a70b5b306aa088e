"""The /events API end to end against a real server process: appends, batches, queries, bad input."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import msgpack
import pytest

from testkit.data import InvalidEventGenerator, InvalidKind

from .support import RunningServer, read_all


def new_event(**fields: Any) -> dict[str, Any]:
    base = {"event_id": str(uuid.uuid4()), "event_type": "custom", "aggregate_id": f"test:{uuid.uuid4()}",
            "data": {"n": 1}, "timestamp": 1_700_000_000.0}
    base.update(fields)
    return base


@pytest.fixture(scope="module")
def agent(server: RunningServer) -> httpx.Client:
    return server.client("agent-http")


def head(client: httpx.Client) -> int:
    body = client.get("/events", params={"order": "desc", "limit": 1}).json()
    return body["events"][0]["sequence"] if body["events"] else 0


def test_append_returns_the_stored_event_with_store_fields(agent: httpx.Client) -> None:
    event = new_event(correlation_id="corr-1")
    response = agent.post("/events", json=event)
    assert response.status_code == 201, response.text
    stored = response.json()
    assert stored["event_id"] == event["event_id"]
    assert stored["source_agent"] == "agent-http"
    assert stored["sequence"] >= 1 and stored["aggregate_version"] == 1
    assert response.headers["location"] == f"/events/{event['event_id']}"
    fetched = agent.get(f"/events/{event['event_id']}")
    assert fetched.status_code == 200 and fetched.json() == stored


@pytest.mark.parametrize("event_id", ["Plain_id.1~x-y", "task:7@host+a=b"])
def test_the_location_of_a_new_event_fetches_it(agent: httpx.Client, event_id: str) -> None:
    """Ids of unreserved characters are their own path; ``: @ + =`` are percent-encoded, and both fetch back."""
    event_id = f"{event_id}-{uuid.uuid4().hex[:8]}"
    response = agent.post("/events", json=new_event(event_id=event_id))
    assert response.status_code == 201, response.text
    location = response.headers["location"]
    expected = event_id.replace(":", "%3A").replace("@", "%40").replace("+", "%2B").replace("=", "%3D")
    assert location == f"/events/{expected}"
    fetched = agent.get(location)
    assert fetched.status_code == 200 and fetched.json()["event_id"] == event_id


def test_resending_the_same_event_is_idempotent_and_a_changed_one_conflicts(agent: httpx.Client) -> None:
    event = new_event()
    first = agent.post("/events", json=event)
    again = agent.post("/events", json=event)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["sequence"] == first.json()["sequence"]
    changed = agent.post("/events", json={**event, "data": {"n": 2}})
    assert changed.status_code == 409 and changed.json()["error"] == "duplicate_event"
    assert len(read_all(agent, aggregate_ids=event["aggregate_id"])) == 1


def test_batch_is_atomic_and_gets_consecutive_sequences(agent: httpx.Client) -> None:
    aggregate = f"test:{uuid.uuid4()}"
    events = [new_event(aggregate_id=aggregate, data={"i": i}) for i in range(20)]
    response = agent.post("/events/batch", json={"events": events})
    assert response.status_code == 201, response.text
    stored = response.json()["events"]
    sequences = [e["sequence"] for e in stored]
    assert sequences == list(range(sequences[0], sequences[0] + 20))
    assert [e["aggregate_version"] for e in stored] == list(range(1, 21))

    before = head(agent)
    bad = [new_event(aggregate_id=aggregate) for _ in range(5)]
    bad[3]["event_type"] = "command_teleported"
    refused = agent.post("/events/batch", json={"events": bad})
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_event"
    conflict = agent.post("/events/batch", json={"events": [new_event(aggregate_id=aggregate)],
                                                 "expected_versions": {aggregate: 3}})
    assert conflict.status_code == 409 and conflict.json()["error"] == "concurrency_conflict"
    assert head(agent) == before, "a refused batch must write nothing"
    assert not any(agent.get(f"/events/{e['event_id']}").status_code == 200 for e in bad)


def test_expected_version_guards_a_single_append(agent: httpx.Client) -> None:
    aggregate = f"test:{uuid.uuid4()}"
    assert agent.post("/events", json=new_event(aggregate_id=aggregate), params={"expected_version": 0}).status_code == 201
    stale = agent.post("/events", json=new_event(aggregate_id=aggregate), params={"expected_version": 0})
    assert stale.status_code == 409 and stale.json()["details"]["actual"] == 1
    assert agent.post("/events", json=new_event(aggregate_id=aggregate), params={"expected_version": 1}).status_code == 201


def test_query_filters_and_cursor_pagination(server: RunningServer, agent: httpx.Client) -> None:
    other = server.client("agent-other")
    correlation = str(uuid.uuid4())
    mine = [new_event(correlation_id=correlation, event_type="file_created", data={"i": i}) for i in range(25)]
    theirs = [new_event(correlation_id=correlation, event_type="file_modified", data={"i": i}) for i in range(10)]
    assert agent.post("/events/batch", json={"events": mine}).status_code == 201
    assert other.post("/events/batch", json={"events": theirs}).status_code == 201

    everything = read_all(agent, page=7, correlation_id=correlation)
    assert [e["event_id"] for e in everything] == [e["event_id"] for e in mine + theirs]
    seqs = [e["sequence"] for e in everything]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    by_agent = read_all(agent, correlation_id=correlation, source_agents="agent-other")
    assert [e["event_id"] for e in by_agent] == [e["event_id"] for e in theirs]
    by_type = read_all(agent, correlation_id=correlation, event_types=["file_created"])
    assert len(by_type) == 25
    window = read_all(agent, correlation_id=correlation, from_sequence=seqs[5], to_sequence=seqs[9])
    assert [e["sequence"] for e in window] == seqs[5:10]
    desc = agent.get("/events", params={"correlation_id": correlation, "order": "desc", "limit": 3}).json()
    assert [e["sequence"] for e in desc["events"]] == seqs[::-1][:3]

    page = agent.get("/events", params={"correlation_id": correlation, "limit": 5}).json()
    foreign = agent.get("/events", params={"event_types": "file_created", "cursor": page["next_cursor"]})
    assert foreign.status_code == 400 and foreign.json()["error"] == "invalid_cursor"
    forged = agent.get("/events", params={"cursor": "bm90LWEtY3Vyc29y"})
    assert forged.status_code == 400 and forged.json()["error"] == "invalid_cursor"


def test_messagepack_in_and_out(agent: httpx.Client) -> None:
    event = new_event(data={"nested": {"list": [1, 2.5, "x", None, True]}})
    response = agent.post("/events", content=msgpack.packb(event),
                          headers={"Content-Type": "application/msgpack", "Accept": "application/msgpack"})
    assert response.status_code == 201
    assert response.headers["content-type"] == "application/msgpack"
    stored = msgpack.unpackb(response.content)
    assert stored["data"] == event["data"] and stored["event_id"] == event["event_id"]
    as_json = agent.get(f"/events/{event['event_id']}").json()
    assert as_json == stored
    bad = agent.post("/events", content=b"\xc1garbage", headers={"Content-Type": "application/msgpack",
                                                                 "Accept": "application/msgpack"})
    assert bad.status_code == 400 and msgpack.unpackb(bad.content)["error"] == "malformed_body"


def _send_case(client: httpx.Client, case: Any) -> httpx.Response:
    if case.target == "raw":
        kind = "application/msgpack" if case.payload[:1] in (b"\xc1", b"\x81", b"\x93") or case.detail.startswith("msgpack") else "application/json"
        return client.post("/events", content=case.payload, headers={"Content-Type": kind})
    if case.kind is InvalidKind.DEEP_NESTING:
        text = b'{"n":' * 10_000 + b"{}" + b"}" * 10_000  # json.dumps itself cannot encode this depth
        body = json.dumps({k: v for k, v in case.payload.items() if k != "data"})[:-1].encode() + b', "data": ' + text + b"}"
        return client.post("/events", content=body, headers={"Content-Type": "application/json"})
    if case.target == "batch":
        return client.post("/events/batch", json={"events": case.payload})
    return client.post("/events", json=case.payload)


#: The store's code for a refusal, and what the HTTP API answers instead when the wire format itself is bad.
_ACCEPTABLE = {
    "invalid_event": {(400, "invalid_event"), (400, "malformed_body")},
    "event_too_large": {(413, "event_too_large"), (413, "body_too_large")},
    "batch_too_large": {(413, "batch_too_large"), (413, "body_too_large")},
}


def test_every_kind_of_bad_input_is_a_4xx_with_a_json_error_and_writes_nothing(agent: httpx.Client) -> None:
    before = head(agent)
    seen = set()
    template = new_event(event_type="custom", aggregate_id="test:bad-input")
    for case in InvalidEventGenerator(seed=11, template=template).cases():
        if case.kind is InvalidKind.NON_SERIALISABLE:
            continue  # Python objects with no JSON form cannot be sent over HTTP at all
        response = _send_case(agent, case)
        body = msgpack.unpackb(response.content) if "msgpack" in response.headers["content-type"] else response.json()
        assert set(body) >= {"error", "message", "retryable", "details"}, body
        assert (response.status_code, body["error"]) in _ACCEPTABLE[case.expected_error], (case, response.text[:300])
        seen.add(case.kind)
    assert len(seen) == len(InvalidKind) - 1
    assert head(agent) == before


@pytest.mark.parametrize(
    ("body", "headers", "params", "status", "code"),
    [
        (b"{not json", {"Content-Type": "application/json"}, {}, 400, "malformed_body"),
        (b"", {"Content-Type": "application/json"}, {}, 400, "malformed_body"),
        (b'{"event_type": "custom", "aggregate_id": "a:1", "data": NaN}', {"Content-Type": "application/json"}, {},
         400, "malformed_body"),
        (b"<event/>", {"Content-Type": "application/xml"}, {}, 415, "unsupported_media_type"),
        (json.dumps(new_event(sequence=5)).encode(), {"Content-Type": "application/json"}, {}, 400, "invalid_event"),
        (json.dumps(new_event(colour="red")).encode(), {"Content-Type": "application/json"}, {}, 400, "invalid_event"),
        (json.dumps(new_event(timestamp="yesterday")).encode(), {"Content-Type": "application/json"}, {}, 400,
         "invalid_event"),
        (json.dumps(new_event(data={"n": 10**30})).encode(), {"Content-Type": "application/json"}, {}, 400,
         "invalid_event"),
        (json.dumps(new_event()).encode(), {"Content-Type": "application/json"}, {"expected_version": "x"}, 400,
         "invalid_query"),
        (json.dumps(new_event()).encode(), {"Content-Type": "application/json"}, {"colour": "red"}, 400,
         "invalid_query"),
        (b"x" * (3 * 1024 * 1024), {"Content-Type": "application/json"}, {}, 413, "body_too_large"),
    ],
    ids=["bad-json", "empty", "nan", "xml", "store-field", "unknown-field", "wrong-type", "int-overflow",
         "bad-version-param", "unknown-param", "huge-body"],
)
def test_malformed_requests(agent: httpx.Client, body: bytes, headers: dict[str, str], params: dict[str, str],
                            status: int, code: str) -> None:
    before = head(agent)
    response = agent.post("/events", content=body, headers=headers, params=params)
    assert (response.status_code, response.json()["error"]) == (status, code), response.text
    assert head(agent) == before


@pytest.mark.parametrize(
    ("params", "code"),
    [({"limit": "0"}, "invalid_query"), ({"limit": "10001"}, "invalid_query"), ({"order": "up"}, "invalid_query"),
     ({"event_types": "command_teleported"}, "invalid_query"), ({"from_sequence": "-1"}, "invalid_query"),
     ({"recorded_after": "inf"}, "invalid_query"), ({"event_type": "custom"}, "invalid_query"),
     ({"limit": ["1", "2"]}, "invalid_query")],
    ids=["limit-0", "limit-big", "order", "unknown-type", "negative-seq", "inf", "typo", "repeated"],
)
def test_malformed_queries(agent: httpx.Client, params: dict[str, Any], code: str) -> None:
    response = agent.get("/events", params=params)
    assert response.status_code == 400 and response.json()["error"] == code, response.text


def test_unknown_routes_and_methods_answer_json(agent: httpx.Client) -> None:
    missing = agent.get("/events/no-such-event")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    nowhere = agent.get("/nowhere")
    assert nowhere.status_code == 404 and nowhere.json()["error"] == "not_found"
    wrong = agent.delete("/events")
    assert wrong.status_code == 405 and wrong.json()["error"] == "method_not_allowed"
