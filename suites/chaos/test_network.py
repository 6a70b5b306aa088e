"""Network faults between agents and the real server: latency and jitter, dropped and reset
connections, lost responses (a one-way black hole) and partitions, through testkit's TCP fault proxy.

Each case proves from the proxy's counters that its fault hit real traffic, then the durability
checker holds the clients' history against the server's log (read directly, not through the proxy):
no acknowledged event lost, none duplicated by retries, nothing that nobody wrote.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from suites.integration.resilient_client import ResilientAppender, new_event, stored_events
from suites.integration.support import RunningServer, read_all, start_server
from testkit.checkers import History, check_durability
from testkit.faults.network import BackgroundFaultProxy, LinkFaults

@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("chaos-net"))
    try:
        yield running
    finally:
        assert running.stop() == 0, running.log()


@pytest.fixture
def proxy(server: RunningServer, case_seed: int) -> Iterator[BackgroundFaultProxy]:
    with BackgroundFaultProxy(server.host, server.port, seed=case_seed) as running:
        yield running


def _latency(proxy: BackgroundFaultProxy) -> Callable[[], None]:
    proxy.set_faults(both=LinkFaults(latency_s=0.01, jitter_s=0.01))
    return lambda: None


def _drop(proxy: BackgroundFaultProxy) -> Callable[[], None]:
    proxy.set_faults(both=LinkFaults(drop_probability=0.15))
    return lambda: None


def _reset(proxy: BackgroundFaultProxy) -> Callable[[], None]:
    proxy.set_faults(both=LinkFaults(reset_probability=0.15))
    return lambda: None


def _blackhole(proxy: BackgroundFaultProxy) -> Callable[[], None]:
    """Answers vanish for a while: the server commits, the client times out and must retry safely."""
    proxy.set_faults(downstream=LinkFaults(blackhole=True))
    timer = threading.Timer(0.8, proxy.clear)
    timer.start()
    return timer.cancel


def _partition(proxy: BackgroundFaultProxy) -> Callable[[], None]:
    proxy.partition()
    timer = threading.Timer(0.8, proxy.heal)
    timer.start()
    return timer.cancel


FAULTS: dict[str, tuple[Callable[[BackgroundFaultProxy], Callable[[], None]], str]] = {
    "net_latency_jitter": (_latency, "latency"),
    "net_drop": (_drop, "drop"),
    "net_reset": (_reset, "reset"),
    "net_lost_responses": (_blackhole, "blackhole"),
    "net_partition": (_partition, "partition"),
}


@pytest.mark.parametrize(
    "kind", [pytest.param(k, marks=pytest.mark.smoke) if k == "net_lost_responses" else k for k in FAULTS], ids=list(FAULTS)
)
def test_network_faults_lose_and_duplicate_nothing(
    kind: str, server: RunningServer, proxy: BackgroundFaultProxy, scaled, testkit_record, tmp_path: Path
) -> None:
    inject, record_kind = FAULTS[kind]
    appends = scaled(30)
    history = History(tmp_path / "history.journal")
    aggregate = f"chaos-net:{uuid.uuid4()}"
    client = ResilientAppender(f"http://{proxy.address}", server.headers("chaos-net"), history, timeout_s=0.3)
    stop = inject(proxy)
    started = time.time()
    try:
        acknowledged = sum(client.append(new_event(aggregate, i)) for i in range(appends))
    finally:
        stop()
        client.close()
    fault = proxy.record(record_kind)
    testkit_record.fault(kind, fault.proven, f"{client.attempts} attempts, {client.transport_errors} transport errors",
                         (started, time.time()))
    assert fault.proven, f"{kind}: the proxy never applied the fault"
    log = read_all(server.client("chaos-net-judge"), aggregate_ids=aggregate)
    verdict = check_durability(history, stored_events(log), gapless=False)
    testkit_record.verdict("durability", verdict)
    counts = verdict.violation_counts
    ids = [e["event_id"] for e in log]
    duplicates = len(ids) - len(set(ids))
    refused = appends - acknowledged  # every write is valid: a refusal or a give-up is the store failing us
    cells = {
        "no_lost_ack": counts.get("lost", 0) + counts.get("hole", 0),
        "no_duplicate": counts.get("duplicate", 0) + duplicates,
        "no_phantom": counts.get("phantom", 0) + counts.get("failed_write_present", 0),
        "order": sum(counts.get(k, 0) for k in ("reordered", "sequence_order", "aggregate_order")),
        "typed_errors": refused,
    }
    for invariant, violations in cells.items():
        # One case = one campaign of appends under the fault, whose effect the proxy's counters proved.
        testkit_record.chaos(kind, invariant, cases=1, proven=int(fault.proven), violations=violations,
                             sut="lighthouse[http]")
    assert refused == 0, f"{kind}: {refused} writes were refused or given up: {client.errors[-5:]}"
    assert verdict.ok, verdict.summary()
    assert duplicates == 0
