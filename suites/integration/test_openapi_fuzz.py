"""Schemathesis fuzzes the live server from its own OpenAPI document (/openapi.json).

Every generated request must get a documented status code with a body matching its documented
schema, never a 5xx; schema-valid requests must be accepted, schema-invalid ones refused. The run is
at least 1,000 requests. PUT /admin/alerts is left out on purpose: fuzzed thresholds would rightly put
the server read-only, and every later request would then get a (correct) 503; test_alerts.py covers it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

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
# events in a batch) is as much a rejection of invalid data as a 400.
_CONFIG = SchemathesisConfig.from_dict({"checks": {"negative_data_rejection": {"expected-statuses": [
    400, 401, 403, 404, 405, 406, 409, 413, 415, 422]}}})
schema = schemathesis.openapi.from_dict(openapi_document(), config=_CONFIG).exclude(method="PUT", path="/admin/alerts")


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
            case.body = storable(case.body)
    response = case.call_and_validate(base_url=server.base_url, headers=admin_headers, timeout=30)
    statuses[response.status_code] += 1


def test_the_fuzzing_run_was_big_enough_and_never_failed(statuses: Counter[int]) -> None:
    total = sum(statuses.values())
    print(f"schemathesis sent {total} requests; statuses {dict(sorted(statuses.items()))}")
    assert total >= MIN_REQUESTS, statuses
    assert not [s for s in statuses if s >= 500], statuses
    assert statuses[200] + statuses[201] > total // 10, "most requests must not be refusals"
