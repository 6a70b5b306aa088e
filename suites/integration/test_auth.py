"""Authentication and roles against a real server: forged, expired, tampered and wrong-role tokens are
refused, and nobody can write as someone else."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
import websockets.sync.client
from websockets.exceptions import InvalidStatus

from lighthouse.server.auth import Role, TokenAuthority

from .support import RunningServer


def event() -> dict[str, object]:
    return {"event_id": str(uuid.uuid4()), "event_type": "custom", "aggregate_id": f"auth:{uuid.uuid4()}",
            "timestamp": 1.0}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def refused(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"] == code


def test_missing_and_malformed_tokens_are_401_with_a_challenge(server: RunningServer) -> None:
    client = server.client()
    missing = client.post("/events", json=event())
    refused(missing, 401, "missing_token")
    assert missing.headers["www-authenticate"].startswith("Bearer")
    refused(client.post("/events", json=event(), headers={"Authorization": "Basic dXNlcjpwYXNz"}), 401, "invalid_token")
    refused(client.post("/events", json=event(), headers=bearer("not-a-token")), 401, "invalid_token")
    refused(client.get("/events", headers=bearer("lh1.e30.AAAA")), 401, "invalid_token")


def test_a_token_signed_with_another_secret_is_refused(server: RunningServer) -> None:
    forger = TokenAuthority(b"not-the-server-secret-at-all-0123456789")
    forged = forger.issue("root", Role.ADMIN)
    refused(server.client().get("/health/detailed", headers=bearer(forged)), 401, "invalid_token")


def test_a_tampered_payload_breaks_the_signature(server: RunningServer) -> None:
    prefix, payload, mac = server.token("mallory", Role.AGENT).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["role"] = "admin"
    promoted = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    refused(server.client().get("/health/detailed", headers=bearer(f"{prefix}.{promoted}.{mac}")), 401, "invalid_token")


def test_an_expired_token_is_refused(server: RunningServer) -> None:
    past = TokenAuthority(server.secret, clock=lambda: time.time() - 3600)
    expired = past.issue("agent-late", Role.AGENT, ttl_seconds=60)
    refused(server.client().get("/events", headers=bearer(expired)), 401, "token_expired")
    fresh = TokenAuthority(server.secret).issue("agent-late", Role.AGENT, ttl_seconds=60)
    assert server.client().get("/events", headers=bearer(fresh)).status_code == 200


def test_roles_limit_what_each_may_do(server: RunningServer) -> None:
    agent = server.client("agent-1", Role.AGENT)
    expert = server.client("expert-1", Role.EXPERT)
    admin = server.client("admin-1", Role.ADMIN)
    refused(agent.get("/health/detailed"), 403, "forbidden")
    refused(expert.get("/health/detailed"), 403, "forbidden")
    assert admin.get("/health/detailed").status_code == 200
    refused(agent.get("/bridge/state"), 403, "forbidden")
    assert expert.get("/bridge/state").status_code == 200
    refused(agent.post("/validate/any/decision", json={"decision": "approve"}), 403, "forbidden")
    refused(expert.put("/admin/alerts", json={}), 403, "forbidden")
    decision = {**event(), "event_type": "command_approved"}
    refused(agent.post("/events", json=decision), 403, "reserved_event_type")
    refused(expert.post("/events", json=decision), 403, "reserved_event_type")


def test_the_bridge_identity_cannot_be_used_by_a_token(server: RunningServer) -> None:
    bridge_token = server.token("validation-bridge", Role.ADMIN)
    refused(server.client().post("/events", json=event(), headers=bearer(bridge_token)), 403, "reserved_agent")


def test_source_agent_comes_from_the_token_never_from_the_body(server: RunningServer) -> None:
    mallory = server.client("mallory", Role.AGENT)
    single = mallory.post("/events", json={**event(), "source_agent": "admin-1"})
    assert single.status_code == 201 and single.json()["source_agent"] == "mallory"
    batch = mallory.post("/events/batch", json={"events": [{**event(), "source_agent": "alice"} for _ in range(3)]})
    assert batch.status_code == 201
    assert {e["source_agent"] for e in batch.json()["events"]} == {"mallory"}
    stored = mallory.get(f"/events/{single.json()['event_id']}").json()
    assert stored["source_agent"] == "mallory"
    # The bridge, too, takes the proposer from the token: a body cannot name another agent.
    refused(mallory.post("/validate", json={"tool": "Read", "tool_input": {}, "agent": "alice"}), 400, "invalid_request")
    proposal = mallory.post("/validate", json={"tool": "Read", "tool_input": {"file_path": "a"}})
    assert proposal.status_code == 200 and proposal.json()["agent_id"] == "mallory"


def test_websocket_needs_a_valid_token(server: RunningServer) -> None:
    with pytest.raises(InvalidStatus) as missing:
        websockets.sync.client.connect(f"{server.ws_url}/stream", open_timeout=30)
    assert missing.value.response.status_code == 401
    forged = TokenAuthority(b"another-secret-entirely-0123456789").issue("x", Role.ADMIN)
    with pytest.raises(InvalidStatus) as bad:
        websockets.sync.client.connect(f"{server.ws_url}/stream", additional_headers=bearer(forged), open_timeout=30)
    assert bad.value.response.status_code == 401
    assert json.loads(bad.value.response.body)["error"] == "invalid_token"


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k != "LIGHTHOUSE_SECRET"}
    return subprocess.run([sys.executable, "-m", "lighthouse.cli_serve", *args], env={**clean, **env},
                          capture_output=True, text=True, timeout=60)


def test_token_command_signs_with_the_server_secret(server: RunningServer) -> None:
    result = _cli(["token", "--agent", "cli-agent", "--role", "expert", "--ttl", "120"],
                  {"LIGHTHOUSE_SECRET": server.secret.decode()})
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert server.client().get("/bridge/state", headers=bearer(token)).status_code == 200
    from_file = _cli(["token", "--agent", "cli-agent", "--role", "agent",
                      "--secret-file", str(server.workdir / "secret")], {})
    assert from_file.returncode == 0
    assert server.client().get("/events", headers=bearer(from_file.stdout.strip())).status_code == 200


def test_no_secret_means_no_server_and_no_token(tmp_path: Path) -> None:
    token = _cli(["token", "--agent", "a", "--role", "agent"], {})
    assert token.returncode == 2 and "LIGHTHOUSE_SECRET" in token.stderr
    serve = _cli(["serve", "--data-dir", str(tmp_path / "d"), "--port", "0"], {})
    assert serve.returncode == 2 and "no default" in serve.stderr
    short = _cli(["serve", "--data-dir", str(tmp_path / "d"), "--port", "0"], {"LIGHTHOUSE_SECRET": "short"})
    assert short.returncode == 2 and "shorter than" in short.stderr
    assert not (tmp_path / "d").exists(), "the server must refuse before touching the data directory"


def test_a_bad_configuration_is_refused_with_a_reason(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"alerts": {"rules": {"disk_usage": {"warning": 0.9, "critical": 0.5}}}}))
    result = _cli(["serve", "--data-dir", str(tmp_path / "d"), "--port", "0", "--config", str(config)],
                  {"LIGHTHOUSE_SECRET": "a-long-enough-secret-for-this-test"})
    assert result.returncode == 2 and "critical must not be below warning" in result.stderr
    config.write_text(json.dumps({"server": {"colour": "red"}}))
    result = _cli(["serve", "--data-dir", str(tmp_path / "d"), "--port", "0", "--config", str(config)],
                  {"LIGHTHOUSE_SECRET": "a-long-enough-secret-for-this-test"})
    assert result.returncode == 2 and "unknown server settings" in result.stderr
