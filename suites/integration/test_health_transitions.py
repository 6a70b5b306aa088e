"""Health transitions of a live server whose data lives on a small tmpfs: the disk really fills.

Two paths to read-only: the disk-usage trigger (warning: degraded, critical: read-only, with
hysteresis), and a genuinely full disk (ENOSPC on write: the store itself turns read-only). Either
way writes get 503 with Retry-After while reads go on, and freeing the space brings the server back
to healthy without a restart and without losing an acknowledged event.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from lighthouse.server.auth import Role
from lighthouse.store_writer import PREALLOCATE_BYTES
from testkit.faults import MechanismUnavailable, SmallTmpfs, fill, free_space

from .support import RunningServer, poll_until, read_all, start_server

pytestmark = pytest.mark.needs_root

_MIB = 1024 * 1024


@pytest.fixture()
def tmpfs() -> Iterator[SmallTmpfs]:
    try:
        with SmallTmpfs(24 * _MIB) as mounted:
            yield mounted
    except MechanismUnavailable as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc.reason}")


def event() -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "event_type": "custom", "aggregate_id": "health:1", "timestamp": 1.0,
            "data": {"pad": "x" * 512}}


def state(client: httpx.Client) -> tuple[int, str]:
    response = client.get("/health")
    return response.status_code, response.json()["state"]


def occupy(tmpfs: SmallTmpfs, name: str, fraction_used: float) -> Path:
    """Allocate a ballast file so that ``fraction_used`` of the filesystem is in use (no ENOSPC probe:
    ``testkit.faults.fill`` proves fullness by filling the disk to the brim for a moment, which the
    disk-usage trigger would rightly see)."""
    stat = os.statvfs(tmpfs.path)
    used_now = 1 - stat.f_bavail / stat.f_blocks
    size = int((fraction_used - used_now) * stat.f_blocks * stat.f_frsize)
    path = tmpfs.path / name
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
    try:
        os.posix_fallocate(fd, 0, size)
    finally:
        os.close(fd)
    after = os.statvfs(tmpfs.path)
    assert abs((1 - after.f_bavail / after.f_blocks) - fraction_used) < 0.02, "the ballast must take the space"
    return path


def serve_on(tmpfs: SmallTmpfs, workdir: Any, alerts: dict[str, Any]) -> RunningServer:
    return start_server(workdir, data_dir=tmpfs.path / "data",
                        config={"alerts": alerts, "store": {"probe_interval": 0.1}})


def test_disk_usage_trigger_degrades_then_blocks_writes_and_recovers(tmpfs: SmallTmpfs, tmp_path: Any) -> None:
    alerts = {"window_seconds": 2.0, "min_dwell_seconds": 0.5, "evaluate_interval_seconds": 0.1,
              "rules": {"disk_usage": {"warning": 0.5, "critical": 0.8, "warning_clear": 0.45, "critical_clear": 0.7}}}
    server = serve_on(tmpfs, tmp_path, alerts)
    try:
        client = server.client("health-agent")
        admin = server.client("health-admin", Role.ADMIN)
        assert state(client) == (200, "healthy")

        to_warning = occupy(tmpfs, "ballast-1", 0.65)
        poll_until(lambda: state(client) == (200, "degraded"), timeout=10, what="degraded")
        assert client.post("/events", json=event()).status_code == 201, "degraded still accepts writes"

        to_critical = occupy(tmpfs, "ballast-2", 0.90)
        poll_until(lambda: state(client)[0] == 503, timeout=10, what="read-only")
        refused = client.post("/events", json=event())
        assert refused.status_code == 503 and refused.json()["error"] == "store_read_only"
        assert int(refused.headers["retry-after"]) >= 1
        assert client.get("/events", params={"limit": 5}).status_code == 200
        detailed = admin.get("/health/detailed").json()
        assert detailed["alerts"]["disk_usage"]["level"] == "critical"
        assert detailed["store"]["state"] == "healthy", "the trigger, not the store, refused the write"

        to_critical.unlink()  # back to ~65 %: below critical_clear 70 %, above warning
        poll_until(lambda: state(client) == (200, "degraded"), timeout=10, what="back to degraded")
        to_warning.unlink()
        poll_until(lambda: state(client) == (200, "healthy"), timeout=10, what="back to healthy")
        assert client.post("/events", json=event()).status_code == 201
        transitions = [(e["event_type"], e["data"]["level"])
                       for e in read_all(admin, aggregate_ids="alert:disk_usage")]
        assert transitions == [("degradation_entered", "warning"), ("degradation_entered", "critical"),
                               ("degradation_cleared", "warning"), ("degradation_cleared", "ok")]
    finally:
        assert server.stop() == 0, server.log()


def test_a_full_disk_makes_the_store_read_only_and_freeing_it_heals(tmpfs: SmallTmpfs, tmp_path: Any) -> None:
    # A short window: the failed write also counts towards the error-rate trigger until it ages out.
    alerts = {"window_seconds": 1.0, "min_dwell_seconds": 0.2, "evaluate_interval_seconds": 0.1,
              "rules": {"disk_usage": {"warning": 0.99, "critical": 1.0, "enabled": False}}}
    server = serve_on(tmpfs, tmp_path, alerts)
    try:
        client = server.client("health-agent")
        acknowledged = []
        for _ in range(20):
            response = client.post("/events", json=event())
            assert response.status_code == 201
            acknowledged.append(response.json()["event_id"])

        ballast = fill(tmpfs.path, leave_bytes=0)
        ballast.record.require()
        # The segment's last, partly used page and the space allocated ahead of the writes still take some
        # events (each over 512 bytes, so the allocated space holds fewer than PREALLOCATE_BYTES // 512).
        for _ in range(64 + PREALLOCATE_BYTES // 512):
            failed = client.post("/events", json=event())
            if failed.status_code != 201:
                break
            acknowledged.append(failed.json()["event_id"])
        assert failed.status_code == 503 and failed.json()["error"] in ("write_failed", "store_read_only")
        assert failed.json()["retryable"] is True
        assert state(client) == (503, "read_only")
        detailed = server.client("health-admin", Role.ADMIN).get("/health/detailed").json()
        assert "ENOSPC" in " ".join(detailed["reasons"].values())
        again = client.post("/events", json=event())
        assert again.status_code == 503 and "retry-after" in again.headers
        assert client.get("/events", params={"limit": 1}).status_code == 200, "reads continue"

        free_space(ballast).require()
        poll_until(lambda: state(client) == (200, "healthy"), timeout=10, what="the store's probe to heal it")
        after = client.post("/events", json=event())
        assert after.status_code == 201
        stored = {e["event_id"] for e in read_all(client, aggregate_ids="health:1")}
        assert set(acknowledged) | {after.json()["event_id"]} <= stored, "no acknowledged event may be lost"
    finally:
        assert server.stop() == 0, server.log()
