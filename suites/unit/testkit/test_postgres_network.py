"""PostgreSQL over TCP through the kit's fault proxy: the shipped network campaign runs against it and can fail.

The PostgreSQL adapter declares a ``network_target`` (its server on 127.0.0.1, clients through the
proxy, the log read back over the Unix socket). Lost responses (the server commits, the answer
vanishes) are the case that separates an idempotent client from one that duplicates: the careful
client must come out clean, a client that re-inserts without looking its event id up must be caught.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testkit.adapters.shipped import SHIPPED
from testkit.chaos import SystemUnderTest, run_network_fault
from testkit.chaos.sut import load_factory
from testkit.checkers import History

pytestmark = pytest.mark.ci


@pytest.fixture
def system() -> SystemUnderTest:
    missing = SHIPPED["postgres"].missing()
    if missing:
        pytest.skip(missing)
    return SystemUnderTest.from_reference("testkit.adapters.postgres:postgres_default")


@pytest.fixture
def root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="testkit-pg-net-test-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_postgres_declares_a_network_target_and_loses_nothing_when_responses_are_lost(
    system: SystemUnderTest, root: Path,
) -> None:
    reference = system.capabilities.network_target
    assert reference, "the PostgreSQL adapter declares no network target"
    with load_factory(reference)(system.spec, root) as target:
        assert target.host == "127.0.0.1"
        result = run_network_fault(target, "net_lost_responses", 20, 7, History(root / "history.journal"),
                                   sut=system.name)
    assert result.faults[0]["proven"], result.faults
    assert result.tally.proven == 1 and not result.failures, result.failures
    verdict = result.verdicts[0][1]
    assert verdict.ok and verdict.counts["acknowledged_present"] == 20, verdict.summary()


def test_a_client_that_retries_without_its_event_id_is_caught(system: SystemUnderTest, root: Path) -> None:
    from testkit.adapters.postgres_network import PostgresTcpClient

    class BlindRetry(PostgresTcpClient):
        """Inserts again after a lost answer instead of asking for the id: the landed first commit makes the
        retry a duplicate (refused by the unique id, so the write is reported failed though it is stored)."""

        def _send(self, event: Any, payload: bytes) -> int:
            row = self._connection().execute(
                "INSERT INTO events(seq, event_id, event_type, aggregate_id, payload) "
                "SELECT coalesce(max(seq), 0) + 1, %s, %s, %s, %s FROM events RETURNING seq",
                (event["event_id"], str(event["event_type"]), event["aggregate_id"], payload)).fetchone()
            assert row is not None
            return int(row[0])

    with load_factory(system.capabilities.network_target)(system.spec, root) as target:
        target.client = lambda address, history: BlindRetry(address, history)  # type: ignore[method-assign]
        result = run_network_fault(target, "net_lost_responses", 20, 7, History(root / "history.journal"),
                                   sut=system.name)
    assert result.faults[0]["proven"], result.faults
    assert result.failures, "a client that cannot retry idempotently passed the lost-responses case"
    print(result.failures[:2])
