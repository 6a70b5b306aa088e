"""A real lighthouse server in a child process, and clients that talk to it.

The server binds port 0 itself and reports the port it got in a ready file, so there is no window in
which another process could take a "free" port first. It is stopped by PID (SIGTERM, then SIGKILL
only if it does not exit in time); its log is kept next to its data for the failure report.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from lighthouse.server.auth import Role, TokenAuthority

__all__ = ["RunningServer", "ServerFailed", "poll_until", "read_all", "running_server", "start_server", "strace_attached"]

_START_TIMEOUT_S = 30.0


class ServerFailed(RuntimeError):
    """The server did not start (or died); the message carries its log."""


def poll_until(predicate: Any, *, timeout: float, interval: float = 0.02, what: str = "condition") -> Any:
    """Call ``predicate`` until it returns something truthy (returned) or ``timeout`` passes (AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; last value {value!r}")
        time.sleep(interval)


@dataclass
class RunningServer:
    process: subprocess.Popen[bytes]
    host: str
    port: int
    data_dir: Path
    workdir: Path
    secret: bytes
    authority: TokenAuthority
    log_path: Path
    _clients: list[httpx.Client] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def token(self, agent: str, role: Role | str = Role.AGENT, *, ttl: int = 3600) -> str:
        return self.authority.issue(agent, role, ttl_seconds=ttl)

    def headers(self, agent: str, role: Role | str = Role.AGENT) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(agent, role)}"}

    def client(self, agent: str | None = None, role: Role | str = Role.AGENT, *, base_url: str | None = None,
               timeout: float = 10.0) -> httpx.Client:
        """An HTTP client authenticated as ``agent`` (anonymous if None), closed with the server."""
        headers = self.headers(agent, role) if agent is not None else {}
        client = httpx.Client(base_url=base_url or self.base_url, headers=headers, timeout=timeout)
        self._clients.append(client)
        return client

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-20_000:]
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, *, timeout: float = 15.0) -> int:
        """SIGTERM (graceful shutdown), then SIGKILL if it has not exited within ``timeout``; the exit status."""
        for client in self._clients:
            client.close()
        self._clients.clear()
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                return self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                return self.process.wait(timeout=timeout)
        return self.process.returncode

    def kill(self) -> int:
        """SIGKILL: no graceful shutdown at all."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        return self.process.wait(timeout=15)


def start_server(
    workdir: Path,
    *,
    config: Mapping[str, Any] | None = None,
    data_dir: Path | None = None,
    secret: bytes | None = None,
    env: Mapping[str, str] | None = None,
    wrapper: Sequence[str] = (),
    extra_args: Sequence[str] = (),
) -> RunningServer:
    """Start ``python -m lighthouse.server`` on 127.0.0.1 with a fresh secret file; wait until it serves."""
    workdir.mkdir(parents=True, exist_ok=True)
    data_dir = data_dir or workdir / "data"
    secret = secret or secrets.token_urlsafe(32).encode()
    secret_file = workdir / "secret"
    secret_file.write_bytes(secret)
    secret_file.chmod(0o600)
    ready = workdir / "ready.json"
    ready.unlink(missing_ok=True)
    command = [*wrapper, sys.executable, "-m", "lighthouse.server", "--data-dir", str(data_dir), "--host", "127.0.0.1",
               "--port", "0", "--secret-file", str(secret_file), "--ready-file", str(ready), "--log-level", "warning",
               *extra_args]
    if config is not None:
        config_file = workdir / "config.json"
        config_file.write_text(json.dumps(config))
        command += ["--config", str(config_file)]
    log_path = workdir / "server.log"
    child_env = dict(os.environ)
    child_env.pop("LIGHTHOUSE_SECRET", None)
    child_env.update(env or {})
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=child_env,
                                   start_new_session=True)
    deadline = time.monotonic() + _START_TIMEOUT_S
    while not ready.exists():
        if process.poll() is not None:
            raise ServerFailed(f"server exited with {process.returncode}:\n{log_path.read_text(errors='replace')}")
        if time.monotonic() > deadline:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            raise ServerFailed(f"server did not start in {_START_TIMEOUT_S} s:\n{log_path.read_text(errors='replace')}")
        time.sleep(0.02)
    info = json.loads(ready.read_text())
    return RunningServer(process, info["host"], int(info["port"]), data_dir, workdir, secret,
                         TokenAuthority(secret), log_path)


@contextmanager
def running_server(workdir: Path, **options: Any) -> Iterator[RunningServer]:
    server = start_server(workdir, **options)
    try:
        yield server
    finally:
        server.stop()


def read_all(client: httpx.Client, *, page: int = 1000, **filters: Any) -> list[dict[str, Any]]:
    """Every event matching ``filters`` (query parameters), following cursors page by page."""
    events: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": page, **filters}
        if cursor:
            params["cursor"] = cursor
        response = client.get("/events", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        events.extend(body["events"])
        cursor = body["next_cursor"]
        if not cursor:
            return events


@contextmanager
def strace_attached(pid: int, inject: str, trace: str, log: Path) -> Iterator[Path]:
    """Attach ``strace -f -p PID -e inject=...`` to a running process for the body of the ``with``.

    Used to make a live server's syscalls slow (``delay_enter``) or fail (``error``) for a while and
    then stop, which a wrapper started with the process cannot do. strace is stopped by its PID
    (SIGINT: it detaches cleanly and the traced process runs on untouched).
    """
    import shutil

    if shutil.which("strace") is None:
        import pytest

        pytest.skip("strace is not installed (make system-deps installs it)")
    process = subprocess.Popen(["strace", "-f", "-qq", "-p", str(pid), "-e", f"trace={trace}", "-e", f"inject={inject}",
                                "-o", str(log)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # strace has attached once /proc/PID/status names a tracer for the main thread.
        def traced() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"strace exited: {process.stderr.read().decode() if process.stderr else ''}")
            status = Path(f"/proc/{pid}/status").read_text()
            return any(line.startswith("TracerPid:") and line.split()[1] != "0" for line in status.splitlines())

        poll_until(traced, timeout=10, what="strace to attach")
        yield log
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
        if process.stderr is not None:
            process.stderr.close()
