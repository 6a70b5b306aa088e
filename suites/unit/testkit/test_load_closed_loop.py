"""Closed-loop runner: N concurrent clients, operation budgets, deadlines, and the classic latency view."""

from __future__ import annotations

import asyncio

import pytest

from testkit.load import LoadConfigError, run_closed_loop

NS = 1_000_000_000


class ConcurrencyProbe:
    """An async target with a 1 ms service time that remembers how many calls overlapped."""

    def __init__(self) -> None:
        self.active = 0
        self.most_active = 0
        self.calls = 0

    async def __call__(self) -> None:
        self.calls += 1
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            await asyncio.sleep(0.001)  # the target's own service time
        finally:
            self.active -= 1


@pytest.mark.parametrize("clients", [1, 4, 16])
def test_n_clients_run_concurrently_and_never_more(clients: int) -> None:
    probe = ConcurrencyProbe()
    result = asyncio.run(run_closed_loop(probe, clients=clients, duration_s=0.3, progress=None))
    assert probe.most_active == clients
    per_client = result.params["per_client_completed"]
    assert len(per_client) == clients and all(count > 0 for count in per_client)
    assert sum(per_client) == result.completed == probe.calls == result.offered
    assert result.latency.count == result.service_time.count == result.completed
    assert result.latency.min_ns >= 1_000_000  # no call was faster than the target's service time
    assert result.start_lag.count == 0 and result.late_starts == result.dropped_starts == 0
    assert result.mode == "closed_loop" and result.params["clients"] == clients


def test_operation_budget_is_exact() -> None:
    probe = ConcurrencyProbe()
    result = asyncio.run(run_closed_loop(probe, clients=3, operations=100, progress=None))
    assert result.offered == result.completed == probe.calls == 100
    assert result.planned_duration_s is None
    assert sum(point.completed for point in result.timeline) == 100


def test_deadline_stops_clients_after_their_current_operation() -> None:
    probe = ConcurrencyProbe()
    result = asyncio.run(run_closed_loop(probe, clients=2, duration_s=0.2, progress=None))
    assert probe.active == 0
    assert 0.2 <= result.duration_s < 0.2 + 0.5  # at most one more operation after the deadline
    assert result.achieved_rate == pytest.approx(result.completed / result.duration_s)


def test_errors_by_kind_and_think_time() -> None:
    calls = 0

    def sometimes_fails() -> None:
        nonlocal calls
        calls += 1
        if calls % 2:
            raise ConnectionResetError("peer went away")

    result = asyncio.run(run_closed_loop(sometimes_fails, clients=2, operations=20, think_time_s=0.001,
                                         progress=None))
    assert result.errors_by_kind == {"ConnectionResetError": 10}
    assert result.completed == 10 and result.offered == 20


@pytest.mark.parametrize(
    "options",
    [{"clients": 0}, {"clients": 2}, {"clients": 2, "duration_s": -1}, {"clients": 2, "operations": 0},
     {"clients": 2, "operations": 5, "think_time_s": float("inf")}],
)
def test_bad_options_raise_load_config_error(options: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(LoadConfigError):
        asyncio.run(run_closed_loop(lambda: None, progress=None, **options))
