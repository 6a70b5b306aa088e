"""Schemathesis fuzzes the live server from its own OpenAPI document (/openapi.json).

Every generated request must get a documented status code with a body matching its documented
schema, never a 5xx; schema-valid requests must be accepted, schema-invalid ones refused. The run is
at least 1,000 requests. PUT /admin/alerts is left out on purpose: fuzzed thresholds would rightly put
the server read-only, and every later request would then get a (correct) 503; test_alerts.py covers it.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.core.mutations import OperatorKind
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import negative_data_rejection

from lighthouse.server.auth import Role
from lighthouse.server.openapi import openapi_document

from .support import RunningServer, start_server

MIN_REQUESTS = 1000
EXAMPLES_PER_OPERATION = 40


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("fuzz"), config={"bridge": {
        "expert_timeout_seconds": 0.5, "pair_request_ttl_seconds": 0.5, "tick_seconds": 0.05,
        "max_wait_seconds": 0.05}})
    try:
        yield running
    finally:
        assert running.stop() == 0, running.log()


@pytest.fixture(scope="module")
def statuses() -> Counter[int]:
    return Counter()


@pytest.fixture(scope="module")
def admin_headers(server: RunningServer) -> dict[str, str]:
    return server.headers("fuzz-admin", Role.ADMIN)


@schemathesis.serializer("application/msgpack")
def _msgpack_body(ctx: Any, value: Any) -> bytes:
    try:
        return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]
    except (OverflowError, UnicodeEncodeError):  # MessagePack cannot even carry these: send what it can
        return msgpack.packb(storable(value), use_bin_type=True)  # type: ignore[no-any-return]


@schemathesis.deserializer("application/msgpack")
def _msgpack_response(ctx: Any, response: Any) -> Any:
    return msgpack.unpackb(response.content, raw=False)


# The document the server serves, built in-process: collection needs it before any server runs
# (test_the_served_document_is_this_one checks they are the same). A refusal with 413 (too many
# events in a batch) or 414 (overlong strings in the query: request line too long, seed 17) is as much a
# rejection of invalid data as a 400.
_CONFIG = SchemathesisConfig.from_dict({"checks": {"negative_data_rejection": {"expected-statuses": [
    400, 401, 403, 404, 405, 406, 409, 413, 414, 415, 422]}}})
schema = schemathesis.openapi.from_dict(openapi_document(), config=_CONFIG).exclude(method="PUT", path="/admin/alerts")


def distinct_event_ids(body: Any) -> Any:
    """What the document states in prose for a batch (no two events share an ``event_id``) but JSON Schema
    cannot: a repeated id is dropped (null: the server assigns one) in a positive batch (seed 1 drew "0" twice)."""
    if not isinstance(body, dict) or not isinstance(body.get("events"), list):
        return body
    seen: set[Any] = set()
    for event in body["events"]:
        if isinstance(event, dict) and event.get("event_id") is not None:
            if event["event_id"] in seen:
                event["event_id"] = None
            seen.add(event["event_id"])
    return body


def storable(value: Any) -> Any:
    """What the document states in prose but JSON Schema cannot, applied to positive free-form bodies:
    integers fit in 64 bits, strings have no lone surrogates."""
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        return max(-(2**63), min(2**63 - 1, value))
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [storable(v) for v in value]
    return value


def test_the_served_document_is_this_one(server: RunningServer) -> None:
    served = server.client().get("/openapi.json")
    assert served.status_code == 200 and served.json() == openapi_document()


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi_document(case: Any, server: RunningServer, admin_headers: dict[str, str],
                                              statuses: Counter[int]) -> None:
    if case.meta is not None and case.meta.generation.mode.is_positive:
        if case.query:
            case.query.pop("cursor", None)  # a valid cursor can only come from the server (test_http_events)
        if isinstance(case.body, (dict, list)):
            case.body = storable(distinct_event_ids(case.body))
    excluded = [negative_data_rejection] if negation_lost_on_the_wire(case) else []
    response = case.call_and_validate(base_url=server.base_url, headers=credentials_for(case, admin_headers),
                                      timeout=30, excluded_checks=excluded)
    statuses[response.status_code] += 1


def credentials_for(case: Any, admin_headers: dict[str, str]) -> dict[str, str] | None:
    """The admin's credentials, unless schemathesis negated the headers (it drops the required Authorization):
    adding them back would undo that negation, and the check would then judge a request that is invalid only
    in the case's record, not on the wire (seed 144387175: a valid token plus an object-typed query value)."""
    negative = case.meta is not None and case.meta.generation.mode.is_negative
    return None if negative and case.meta.is_negative_at(ParameterLocation.HEADER) else admin_headers


def negation_lost_on_the_wire(case: Any) -> bool:
    """Whether every negation of this case is a query value turned into an object whose keys are strings the
    parameter accepts: ``urlencode(doseq=True)`` sends each key as one plain value, so `?aggregate_ids=x` goes
    out for ``{"x": ...}`` and is a valid request the server must answer 200. The query string cannot carry
    "an object" at all, so such a case tests nothing negative; schemathesis's maintainers treat these as false
    positives of `negative_data_rejection` (schemathesis#2312, #3962, #4600/#4601: "validate the collapsed value
    against the parameter's own schema"). Only the rejection check is skipped: status and body are still
    validated, and any other negation (another location, another operator) keeps the check."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_negative:
        return False
    if any(meta.is_negative_at(location) for location in ParameterLocation if location != ParameterLocation.QUERY):
        return False
    mutations = getattr(meta.phase.data, "mutations", None)
    if not mutations:
        return False
    for mutation in mutations:
        value = (case.query or {}).get(mutation.parameter) if mutation.parameter else None
        if (mutation.operator != OperatorKind.CHANGE_TYPE or mutation.parameter_location != ParameterLocation.QUERY
                or not isinstance(value, dict) or not value
                or not _wire_form_is_valid(case, mutation.parameter, value)):
            return False
    return True


def _wire_form_is_valid(case: Any, name: str, value: dict[str, Any]) -> bool:
    """Whether what goes on the wire for an object-typed query value (its keys, one value each) satisfies the
    parameter's documented schema, judged by schemathesis's own validator for that parameter."""
    parameter = case.operation.get_parameter_set(ParameterLocation.QUERY).get(name)
    if parameter is None:
        return False
    validator = parameter.get_validator()
    sent = [str(key) for key in value]
    if parameter.validation_schema.get("type") == "array":
        return bool(validator.is_valid(sent))
    return len(sent) == 1 and bool(validator.is_valid(sent[0]))


def test_the_fuzzing_run_was_big_enough_and_never_failed(statuses: Counter[int]) -> None:
    total = sum(statuses.values())
    print(f"schemathesis sent {total} requests; statuses {dict(sorted(statuses.items()))}")
    assert total >= MIN_REQUESTS, statuses
    assert not [s for s in statuses if s >= 500], statuses
    assert statuses[200] + statuses[201] > total // 10, "most requests must not be refusals"


# The strings schemathesis's negative mode can draw for a query integer or number that Python's int()/float()
# would still read as a number: each is invalid by the document, so each must be a 400, not a 200.
_NOT_JSON_NUMBERS = ("\u0663", " 3", "3 ", "+3", "3_0", "03", "0x10", "3.", ".5", "1e", "infinity", "NaN", "\uff13")


@pytest.mark.parametrize("value", _NOT_JSON_NUMBERS)
def test_numbers_in_the_query_follow_the_json_grammar_the_document_promises(server: RunningServer,
                                                                           admin_headers: dict[str, str],
                                                                           value: str) -> None:
    client = server.client()
    for name in ("from_sequence", "recorded_after"):
        response = client.get("/events", params={name: value}, headers=admin_headers)
        assert response.status_code == 400, (name, value, response.status_code, response.text)
    assert client.get("/events", params={"from_sequence": "3", "recorded_after": "-1.5e3"},
                      headers=admin_headers).status_code == 200


def test_every_documented_query_parameter_is_accepted_and_an_undocumented_one_refused(
        server: RunningServer, admin_headers: dict[str, str]) -> None:
    client = server.client()
    document = openapi_document()
    checked = 0
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            url = re.sub(r"\{[^}]+\}", "no-such-id", path)
            refused = client.request(method.upper(), url, params={"undocumented_parameter": "1"},
                                     headers=admin_headers, content=b"{}")
            assert refused.status_code == 400 and "undocumented_parameter" in refused.text, (
                method, path, refused.status_code, refused.text)
            documented = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
            for name in documented if method == "get" else ():
                response = client.get(url, params={name: "1"}, headers=admin_headers)
                assert "unknown query parameters" not in response.text, (path, name, response.text)
            checked += 1
    assert checked >= 20, f"only {checked} operations found in the document"
