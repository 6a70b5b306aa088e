"""Network faults between agents and the real lighthouse server, through testkit's TCP fault proxy.

Campaign: :func:`testkit.chaos.run_network_fault`; this file only provides the networked target (the
server of ``suites/integration``, its resilient HTTP client, and a direct read-back).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from suites.integration.resilient_client import ResilientAppender, stored_events
from suites.integration.support import RunningServer, read_all, start_server
from testkit.adapters import StoredEvent
from testkit.chaos import run_network_fault, settle
from testkit.chaos.network import NETWORK_FAULTS
from testkit.checkers import History


@dataclass
class LighthouseServerTarget:
    """The running server as a :class:`testkit.chaos.network.NetworkTarget`."""

    server: RunningServer

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def port(self) -> int:
        return self.server.port

    def client(self, address: str, history: History) -> ResilientAppender:
        return ResilientAppender(f"http://{address}", self.server.headers("chaos-net"), history, timeout_s=0.3)

    def read_back(self, aggregate_id: str) -> Sequence[StoredEvent]:
        return stored_events(read_all(self.server.client("chaos-net-judge"), aggregate_ids=aggregate_id))


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LighthouseServerTarget]:
    running = start_server(tmp_path_factory.mktemp("chaos-net"))
    try:
        yield LighthouseServerTarget(running)
    finally:
        assert running.stop() == 0, running.log()


@pytest.mark.parametrize(
    "kind", [pytest.param(k, marks=pytest.mark.smoke) if k == "net_lost_responses" else k for k in NETWORK_FAULTS],
    ids=list(NETWORK_FAULTS),
)
def test_network_faults_lose_and_duplicate_nothing(
    kind: str, target: LighthouseServerTarget, scaled, testkit_record, testkit_seed: int, case_seed: int,
    tmp_path: Path,
) -> None:
    testkit_record.sut = "lighthouse[http]"
    result = run_network_fault(target, kind, scaled(30), case_seed, History(tmp_path / "history.journal"),
                               sut="lighthouse[http]")
    settle(result, testkit_record, fault="network", expected_unsafe=False, seed=testkit_seed)
