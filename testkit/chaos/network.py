"""Network faults between clients and a networked store, through the kit's TCP fault proxy.

Latency and jitter, dropped and reset connections, lost responses (a one-way black hole) and
partitions. A networked adapter offers a :class:`NetworkTarget` (its server's address, a retrying
client through any address, and a direct read-back); each case proves from the proxy's counters that
its fault hit real traffic, then the durability checker holds the clients' history against the log
read directly (not through the proxy): nothing acknowledged lost, nothing duplicated by retries,
nothing that nobody wrote, every write eventually acknowledged.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from testkit.adapters import StoredEvent
from testkit.chaos.judging import Tally
from testkit.chaos.result import CampaignResult
from testkit.checkers import History, check_durability
from testkit.faults.network import BackgroundFaultProxy, LinkFaults

__all__ = ["NETWORK_FAULTS", "NetworkClient", "NetworkTarget", "run_network_fault"]


class NetworkClient(Protocol):
    """Appends one event, retrying transport failures idempotently (by event id); records it in the history."""

    attempts: int
    transport_errors: int
    errors: list[str]

    def append(self, event: dict[str, Any]) -> bool: ...

    def close(self) -> None: ...


class NetworkTarget(Protocol):
    """A running networked store, as a network campaign needs it."""

    host: str
    port: int

    def client(self, address: str, history: History) -> NetworkClient: ...

    def read_back(self, aggregate_id: str) -> Sequence[StoredEvent]: ...


def _set(faults: LinkFaults) -> Callable[[BackgroundFaultProxy], Callable[[], None]]:
    def inject(proxy: BackgroundFaultProxy) -> Callable[[], None]:
        proxy.set_faults(both=faults)
        return lambda: None
    return inject


HOLD_AFTER_PROOF_S = 0.3  # a passing fault lasts this long once the proxy shows it acted on real traffic
HOLD_CAP_S = 30.0  # and ends by then even unproven (the case then reports it unproven)


def _end_once_proven(proxy: BackgroundFaultProxy, record_kind: str, end: Callable[[], None]) -> Callable[[], None]:
    """Call ``end`` once the proxy's counters prove ``record_kind`` acted (however slowly a loaded machine
    brought traffic to it), plus HOLD_AFTER_PROOF_S; the callable returned ends the fault at once."""
    stopped = threading.Event()

    def watch() -> None:
        deadline = time.monotonic() + HOLD_CAP_S
        while not stopped.is_set() and time.monotonic() < deadline and not proxy.record(record_kind).proven:
            stopped.wait(0.02)  # polling the proxy's counters
        stopped.wait(HOLD_AFTER_PROOF_S)
        end()

    watcher = threading.Thread(target=watch, name=f"end-{record_kind}-once-proven", daemon=True)
    watcher.start()

    def stop() -> None:
        stopped.set()
        watcher.join()
    return stop


def _blackhole(proxy: BackgroundFaultProxy) -> Callable[[], None]:
    """Answers vanish for a while: the server commits, the client times out and must retry safely."""
    proxy.set_faults(downstream=LinkFaults(blackhole=True))
    return _end_once_proven(proxy, "blackhole", proxy.clear)


def _partition(proxy: BackgroundFaultProxy) -> Callable[[], None]:
    proxy.partition()
    return _end_once_proven(proxy, "partition", proxy.heal)


#: fault kind -> (inject: returns a stop callable, the proxy's record kind that proves it)
NETWORK_FAULTS: dict[str, tuple[Callable[[BackgroundFaultProxy], Callable[[], None]], str]] = {
    "net_latency_jitter": (_set(LinkFaults(latency_s=0.01, jitter_s=0.01)), "latency"),
    "net_drop": (_set(LinkFaults(drop_probability=0.15)), "drop"),
    "net_reset": (_set(LinkFaults(reset_probability=0.15)), "reset"),
    "net_lost_responses": (_blackhole, "blackhole"),
    "net_partition": (_partition, "partition"),
}


def _event(aggregate: str, i: int) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "event_type": "custom", "aggregate_id": aggregate,
            "timestamp": 1_700_000_000.0 + i, "data": {"i": i}}


def run_network_fault(target: NetworkTarget, kind: str, appends: int, seed: int, history: History,
                      *, sut: str = "") -> CampaignResult:
    """``appends`` writes through a proxy applying fault ``kind`` (one case), judged against the direct log."""
    inject, record_kind = NETWORK_FAULTS[kind]
    result = CampaignResult(Tally(kind, sut))
    aggregate = f"chaos-net:{uuid.uuid4()}"
    with BackgroundFaultProxy(target.host, target.port, seed=seed) as proxy:
        client = target.client(proxy.address, history)
        stop = inject(proxy)
        started = time.time()
        try:
            acknowledged = sum(client.append(_event(aggregate, i)) for i in range(appends))
        finally:
            stop()
            client.close()
        fault = proxy.record(record_kind)
    result.fault(kind, fault.proven, f"{client.attempts} attempts, {client.transport_errors} transport errors",
                 (started, time.time()))
    result.tally.case(fault.proven)
    result.timeline.fault(fault, kind)
    result.timeline.history = history  # the client's own history: the picture of this case
    log = list(target.read_back(aggregate))
    verdict = check_durability(history, log, gapless=False)
    counts = verdict.violation_counts
    ids = [e.event_id for e in log]
    refused = appends - acknowledged  # every write is valid: a refusal or a give-up is the store failing us
    cells = {
        "no_lost_ack": counts.get("lost", 0) + counts.get("hole", 0),
        "no_duplicate": counts.get("duplicate", 0) + len(ids) - len(set(ids)),
        "no_phantom": counts.get("phantom", 0) + counts.get("failed_write_present", 0),
        "order": sum(counts.get(k, 0) for k in ("reordered", "sequence_order", "aggregate_order")),
        "typed_errors": refused,
    }
    for invariant, violations in cells.items():
        result.tally.violated(invariant, violations)
    if refused:
        result.failures.append(f"{kind}: {refused} writes were refused or given up: {client.errors[-5:]}")
    if not verdict.ok:
        result.failures.append(verdict.summary())
    if cells["no_duplicate"]:
        result.failures.append(f"{kind}: {cells['no_duplicate']} duplicated events")
    result.verdicts.append(("durability", verdict))
    return result
