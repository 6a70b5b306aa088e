"""A Locust master and N workers as local processes: the distributed run on one machine.

The same commands run on several machines (master on one, workers on the others pointing at it);
this starts them side by side, which is how the kit tests its own distributed path and how a soak
uses every core of one load machine (Locust's users are greenlets: one process uses one core).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["LocalCluster", "free_port", "locust_command"]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def locust_command(*options: str) -> list[str]:
    """``python -m testkit.load.locust OPTIONS`` with this interpreter."""
    return [sys.executable, "-m", "testkit.load.locust", *options]


@dataclass
class LocalCluster:
    """``with LocalCluster(...) as cluster: cluster.wait(timeout)``: master's exit status; logs in ``out_dir``."""

    host: str
    out_dir: Path
    tokens_file: Path
    users: int
    run_time: str
    workers: int = 2
    spawn_rate: float = 0.0
    testkit_options: Sequence[str] = ()
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def _plan(self) -> list[str]:
        return ["--testkit-tokens", str(self.tokens_file), "--testkit-out", str(self.out_dir), *self.testkit_options]

    def start(self) -> LocalCluster:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        master = locust_command(
            "--master", "--headless", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
            "--expect-workers", str(self.workers), "-u", str(self.users), "-r", str(self.spawn_rate or self.users),
            "--testkit-run-time", self.run_time, "--host", self.host, "--only-summary",
            *self._plan())
        self.processes.append(self._spawn(master, "master"))
        for index in range(self.workers):
            worker = locust_command("--worker", "--master-host", "127.0.0.1", "--master-port", str(port),
                                    "--host", self.host, *self._plan())
            self.processes.append(self._spawn(worker, f"worker-{index}"))
        return self

    def _spawn(self, command: list[str], name: str) -> subprocess.Popen[bytes]:
        with open(self.out_dir / f"{name}.log", "ab") as log:
            return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                    env=dict(os.environ))

    def wait(self, timeout: float) -> int:
        """Wait for the master (it ends the workers), then for the workers; the master's exit status."""
        status = self.processes[0].wait(timeout=timeout)
        for worker in self.processes[1:]:
            worker.wait(timeout=30)
        return status

    def log(self, name: str = "master") -> str:
        path = self.out_dir / f"{name}.log"
        return path.read_text(errors="replace")[-10_000:] if path.exists() else ""

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
