"""/metrics against a real server: every counter equals what the test did, and the gauges equal what
is on disk (segment bytes and files, corruption found)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets.sync.client
from prometheus_client.parser import text_string_to_metric_families

from lighthouse.segments import scan_directory
from lighthouse.server.auth import Role
from testkit.faults import flip_bit

from .support import RunningServer, poll_until, start_server


def scrape(client: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def event(event_type: str = "custom", **extra: Any) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "event_type": event_type, "aggregate_id": f"m:{uuid.uuid4()}",
            "timestamp": 1.0, **extra}


def test_counters_equal_what_was_done(server: RunningServer) -> None:
    agent = server.client("metrics-agent")
    anonymous = server.client()
    started = time.perf_counter()
    before = scrape(agent)

    singles = [event("file_created") for _ in range(7)] + [event("custom") for _ in range(4)]
    for e in singles:
        assert agent.post("/events", json=e).status_code == 201
    assert agent.post("/events", json=singles[0]).status_code == 200  # idempotent retry: not a new event
    batch = [event("file_modified") for _ in range(25)]
    assert agent.post("/events/batch", json={"events": batch}).status_code == 201
    for _ in range(3):
        assert agent.post("/events", json={"event_type": "nope", "aggregate_id": "x"}).status_code == 400
    for _ in range(2):
        assert anonymous.get("/events").status_code == 401
    assert agent.get("/events/missing").status_code == 404
    for _ in range(5):
        assert agent.get("/events", params={"limit": 3}).status_code == 200
    assert agent.get(f"/events/{batch[0]['event_id']}").status_code == 200

    after = scrape(agent)
    wall = time.perf_counter() - started

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("lighthouse_events_appended_total", event_type="file_created") == 7
    assert delta("lighthouse_events_appended_total", event_type="custom") == 4
    assert delta("lighthouse_events_appended_total", event_type="file_modified") == 25
    assert delta("lighthouse_append_duration_seconds_count", kind="single") == 12
    assert delta("lighthouse_append_duration_seconds_count", kind="batch") == 1
    assert delta("lighthouse_errors_total", code="invalid_event") == 3
    assert delta("lighthouse_errors_total", code="missing_token") == 2
    assert delta("lighthouse_errors_total", code="not_found") == 1
    assert delta("lighthouse_query_duration_seconds_count", kind="query") == 5
    assert delta("lighthouse_query_duration_seconds_count", kind="get") == 2  # one found, one missing
    assert delta("lighthouse_http_requests_total", method="POST", route="/events", status="201") == 11
    assert delta("lighthouse_http_requests_total", method="POST", route="/events", status="400") == 3
    assert delta("lighthouse_http_requests_total", method="GET", route="/events", status="401") == 2
    assert 0 < delta("lighthouse_write_seconds_total") <= wall  # the appends' writes and syncs, one after another


def test_gauges_equal_the_store_on_disk(server: RunningServer) -> None:
    agent = server.client("metrics-agent")
    assert agent.post("/events/batch", json={"events": [event() for _ in range(10)]}).status_code == 201
    samples = scrape(agent)
    segments = sorted(server.data_dir.glob("*.seg"))
    assert value(samples, "lighthouse_segments") == len(segments)
    # the log's bytes: the newest segment's file also holds space allocated ahead of the writes
    log_bytes = sum(report.scan.truncate_at or report.size for report in scan_directory(server.data_dir))
    assert value(samples, "lighthouse_disk_bytes") == log_bytes < sum(p.stat().st_size for p in segments)
    head = agent.get("/events", params={"order": "desc", "limit": 1}).json()["events"][0]["sequence"]
    assert value(samples, "lighthouse_head_sequence") == head
    assert value(samples, "lighthouse_events") == head
    assert value(samples, "lighthouse_health_state", state="healthy") == 1
    assert value(samples, "lighthouse_health_state", state="read_only") == 0
    assert value(samples, "lighthouse_corruption_ranges") == 0
    assert value(samples, "lighthouse_alert_level", alert="disk_usage") == 0


def test_stream_subscribers_are_counted(server: RunningServer) -> None:
    agent = server.client("metrics-agent")
    with websockets.sync.client.connect(f"{server.ws_url}/stream", additional_headers=server.headers("w"),
                                        open_timeout=30) as ws:
        ws.recv(timeout=5)
        assert value(scrape(agent), "lighthouse_stream_subscribers") == 1
    poll_until(lambda: value(scrape(agent), "lighthouse_stream_subscribers") == 0, timeout=10,
               what="the closed stream to be forgotten")


def test_bridge_decisions_are_counted(server: RunningServer) -> None:
    agent = server.client("metrics-agent")
    before = scrape(agent)
    for command in ("git status", "ls -la", "sudo reboot"):
        assert agent.post("/validate", json={"tool": "Bash", "tool_input": {"command": command}}).status_code == 200
    after = scrape(agent)
    approved = ("lighthouse_bridge_decisions_total", (("decision", "approved"), ("method", "policy")))
    rejected = ("lighthouse_bridge_decisions_total", (("decision", "rejected"), ("method", "policy")))
    assert after.get(approved, 0) - before.get(approved, 0) == 2
    assert after.get(rejected, 0) - before.get(rejected, 0) == 1


@pytest.fixture()
def corrupted_server(tmp_path: Path) -> Iterator[RunningServer]:
    """A server restarted on a log whose middle frame had a bit flipped while it was down."""
    first = start_server(tmp_path)
    writer = first.client("writer")
    for _ in range(3):
        assert writer.post("/events/batch", json={"events": [event(data={"pad": "x" * 2000}) for _ in range(20)]}).status_code == 201
    assert first.stop() == 0
    segment = sorted(first.data_dir.glob("*.seg"))[0]
    flip_bit(segment, segment.stat().st_size // 2, 3).require()
    second = start_server(tmp_path, data_dir=first.data_dir, secret=first.secret)
    try:
        yield second
    finally:
        assert second.stop() == 0, second.log()


def test_corruption_found_on_open_is_reported(corrupted_server: RunningServer) -> None:
    admin = corrupted_server.client("admin", Role.ADMIN)
    samples = scrape(admin)
    assert value(samples, "lighthouse_corruption_ranges") == 1
    assert value(samples, "lighthouse_lost_sequences") == 20  # the damaged batch frame
    assert value(samples, "lighthouse_quarantined_bytes") > 0
    assert value(samples, "lighthouse_health_state", state="degraded") == 1
    health = admin.get("/health")
    assert health.status_code == 200 and health.json() == {"state": "degraded", "writable": True}
    detailed = admin.get("/health/detailed").json()
    assert {tuple(r) for r in detailed["store"]["lost_sequences"]} == {(21, 40)}
