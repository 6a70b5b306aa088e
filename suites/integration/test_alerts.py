"""Each degradation trigger of a live server driven across its line and back by a real cause:
appends made slow (strace delays fdatasync), appends that fail (strace makes pwrite64 fail with EIO),
disk usage against live-reconfigured thresholds. The fault is shown to have happened before judging."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from lighthouse.server.auth import Role

from .support import RunningServer, poll_until, read_all, start_server, strace_attached

# Lines far above what a loaded 2-core machine adds to an append (load average 8: appends of 0.2-0.4 s), and
# a window wide enough to hold min_samples sequential appends at that load; the faults below are sized to
# land between the lines whatever the load (each append waits for at most two delayed group commits).
WARNING_S, CRITICAL_S = 0.5, 5.0
WARNING_DELAY_S, CRITICAL_DELAY_S = 1.0, 6.0
WAIT_S = 60.0  # a level falls only once the window (10 s) no longer holds the bad samples

ALERTS = {
    "window_seconds": 10.0,
    "window_buckets": 10,
    "min_samples": 8,
    "min_dwell_seconds": 0.5,
    "evaluate_interval_seconds": 0.1,
    "rules": {
        "append_p99_seconds": {"warning": WARNING_S, "critical": CRITICAL_S},
        "error_rate": {"warning": 0.05, "critical": 0.3},
        "disk_usage": {"warning": 0.98, "critical": 0.99, "enabled": False},
    },
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("alerts"),
                           config={"alerts": ALERTS, "store": {"probe_interval": 0.1}})
    try:
        yield running
    finally:
        assert running.stop() == 0, running.log()


@pytest.fixture(scope="module")
def admin(server: RunningServer) -> httpx.Client:
    return server.client("alert-admin", Role.ADMIN)


def event() -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "event_type": "custom", "aggregate_id": f"alert:{uuid.uuid4()}",
            "timestamp": 1.0}


def alert(admin: httpx.Client, name: str) -> dict[str, Any]:
    return admin.get("/health/detailed").json()["alerts"][name]


def wait_level(admin: httpx.Client, name: str, level: str, timeout: float = WAIT_S) -> dict[str, Any]:
    return poll_until(lambda: (a := alert(admin, name))["level"] == level and a, timeout=timeout,
                      what=f"{name} to reach {level}")


def concurrent_appends(server: RunningServer, clients: int, each: int) -> list[tuple[int, float]]:
    """``clients`` threads append ``each`` events one after another: (status, seconds) per append."""
    def run(_: int) -> list[tuple[int, float]]:
        out = []
        with httpx.Client(base_url=server.base_url, headers=server.headers("load"), timeout=120) as client:
            for _ in range(each):
                started = time.perf_counter()
                status = client.post("/events", json=event()).status_code
                out.append((status, time.perf_counter() - started))
        return out

    with ThreadPoolExecutor(clients) as pool:
        return [r for chunk in pool.map(run, range(clients)) for r in chunk]


def append_until(server: RunningServer, admin: httpx.Client, name: str, level: str, budget_s: float) -> dict[str, Any]:
    """Append one event at a time until alert ``name`` reaches ``level``; counts per outcome, and the alert."""
    counts: dict[str, int] = {}
    deadline = time.monotonic() + budget_s
    with httpx.Client(base_url=server.base_url, headers=server.headers("load"), timeout=30) as client:
        while time.monotonic() < deadline:
            response = client.post("/events", json=event())
            outcome = "201" if response.status_code == 201 else response.json()["error"]
            counts[outcome] = counts.get(outcome, 0) + 1
            if outcome == "store_read_only":
                time.sleep(0.02)  # refused while the store probes its way back: not an attempt
            now = alert(admin, name)
            if now["level"] == level:
                return {"counts": counts, "alert": now}
    raise AssertionError(f"{name} never reached {level}: {counts}, {alert(admin, name)}")


def p99_transitions(admin: httpx.Client) -> list[tuple[str, str]]:
    """Every level change of the append p99 trigger the server recorded, oldest first."""
    history = read_all(admin, aggregate_ids="alert:append_p99_seconds")
    assert all(e["source_agent"] == "lighthouse-server" for e in history)
    return [(e["event_type"], e["data"]["level"]) for e in history]


def transitions_since(admin: httpx.Client, before: int, expected: list[tuple[str, str]]) -> None:
    """The transitions recorded after the first ``before`` ones are exactly ``expected`` (once all are written)."""
    recorded = poll_until(lambda: t if len(t := p99_transitions(admin)[before:]) >= len(expected) else None,
                          timeout=WAIT_S, what=f"transitions {expected}")
    assert recorded == expected


def test_slow_appends_degrade_and_recover_without_refusing_writers(server: RunningServer, admin: httpx.Client,
                                                            tmp_path: Path) -> None:
    assert all(s == 201 for s, _ in concurrent_appends(server, 4, 3))
    wait_level(admin, "append_p99_seconds", "ok")  # ordinary appends, even on a loaded machine, stay below the line

    before = len(p99_transitions(admin))
    delay_us = int(WARNING_DELAY_S * 1e6)
    with strace_attached(server.pid, f"fdatasync:delay_enter={delay_us}", "fdatasync", tmp_path / "slow.log") as log:
        results = concurrent_appends(server, 8, 2)
        assert "DELAYED" in log.read_text(), "the fault must have happened"
        assert all(s == 201 for s, _ in results) and min(t for _, t in results) >= WARNING_DELAY_S
        warned = wait_level(admin, "append_p99_seconds", "warning")
        assert WARNING_S <= warned["value"] < CRITICAL_S
        health = admin.get("/health")
        assert health.status_code == 200 and health.json() == {"state": "degraded", "writable": True}
    wait_level(admin, "append_p99_seconds", "ok")
    assert admin.get("/health").json()["state"] == "healthy"
    transitions_since(admin, before, [("degradation_entered", "warning"), ("degradation_cleared", "ok")])

    before = len(p99_transitions(admin))
    delay_us = int(CRITICAL_DELAY_S * 1e6)
    with strace_attached(server.pid, f"fdatasync:delay_enter={delay_us}", "fdatasync", tmp_path / "slower.log") as log:
        results = concurrent_appends(server, 10, 1)
        assert "DELAYED" in log.read_text()
        critical = wait_level(admin, "append_p99_seconds", "critical")
        assert critical["value"] >= CRITICAL_S
    # Latency sheds load per principal (429 over a smaller in-flight budget); it never refuses every writer.
    health = admin.get("/health")
    assert health.status_code == 200 and health.json() == {"state": "degraded", "writable": True}
    assert admin.post("/events", json=event()).status_code == 201, "a latency alert must not make the server read-only"
    assert admin.get("/events", params={"limit": 1}).status_code == 200
    wait_level(admin, "append_p99_seconds", "ok")
    poll_until(lambda: admin.get("/health").status_code == 200, timeout=WAIT_S, what="healthy again")
    assert admin.post("/events", json=event()).status_code == 201
    transitions_since(admin, before, [("degradation_entered", "critical"), ("degradation_cleared", "ok")])


@pytest.mark.parametrize(
    ("when", "level"),
    [("10+10", "warning"), ("3+3", "critical")],
    ids=["one-write-in-ten-fails", "every-third-write-fails"],
)
def test_failing_writes_raise_the_error_rate_and_it_recovers(server: RunningServer, admin: httpx.Client,
                                                             tmp_path: Path, when: str, level: str) -> None:
    wait_level(admin, "error_rate", "ok")
    with strace_attached(server.pid, f"pwrite64:error=EIO:when={when}", "pwrite64", tmp_path / "eio.log") as log:
        outcome = append_until(server, admin, "error_rate", level, budget_s=120)
        assert "INJECTED" in log.read_text(), "the fault must have happened"
    counts, reached = outcome["counts"], outcome["alert"]
    assert counts.get("write_failed", 0) >= 1, counts
    assert reached["value"] >= (0.05 if level == "warning" else 0.3)
    if level == "warning":
        assert reached["value"] < 0.3
    wait_level(admin, "error_rate", "ok")
    poll_until(lambda: admin.get("/health").json()["state"] == "healthy", timeout=WAIT_S, what="healthy again")
    assert admin.post("/events", json=event()).status_code == 201


def test_disk_usage_thresholds_reconfigured_live(server: RunningServer, admin: httpx.Client) -> None:
    # Earlier tests in this module drive other rules (and the store) to critical; start from a healthy
    # server so that every state seen below is the disk rule's doing.
    poll_until(lambda: admin.get("/health").json()["state"] == "healthy", timeout=WAIT_S,
               what="the server to be healthy before the disk rule is moved")
    usage = float(admin.get("/admin/alerts").json()["status"]["disk_usage"]["value"])
    assert 0 < usage < 1
    below, above = usage / 2, min(0.999, usage + (1 - usage) / 2)

    def configure(warning: float, critical: float) -> None:
        config = {**ALERTS, "rules": {**ALERTS["rules"], "disk_usage": {  # type: ignore[dict-item]
            "warning": warning, "critical": critical, "enabled": True}}}
        response = admin.put("/admin/alerts", json=config)
        assert response.status_code == 200, response.text

    configure(below, above)  # usage is between the lines: warning
    wait_level(admin, "disk_usage", "warning")
    assert admin.get("/health").json() == {"state": "degraded", "writable": True}
    configure(below / 2, below)  # now over critical too
    wait_level(admin, "disk_usage", "critical")
    refused = admin.post("/events", json=event())
    assert refused.status_code == 503 and "disk_usage" in refused.json()["message"]
    configure(above, min(0.9999, above + 0.0005))  # the lines move above the usage: back to ok
    wait_level(admin, "disk_usage", "ok")
    assert admin.post("/events", json=event()).status_code == 201
    bad = admin.put("/admin/alerts", json={"rules": {"disk_usage": {"warning": 0.9, "critical": 0.1}}})
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_alert_config"
    restore = admin.put("/admin/alerts", json=ALERTS)
    assert restore.status_code == 200
