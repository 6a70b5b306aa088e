"""The append path's tallies expose exactly what prometheus_client's ``Counter`` and ``Histogram`` would for
the same updates: same text at ``/metrics`` (names, HELP/TYPE, labels, cumulative ``le`` buckets, sum,
count), except the ``_created`` timestamps' values, which are when each series was first touched."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import metrics as prometheus_metrics

from lighthouse.server.tallies import CountTally, LatencyTally

pytestmark = pytest.mark.ci

_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_LABEL = st.sampled_from(["single", "batch", "custom", "a\"b\\c"])
# bucket bounds themselves belong to their bucket ("le"): drawn often
_SECONDS = st.one_of(st.sampled_from(_BUCKETS), st.floats(0, 20, allow_nan=False))


def _masked(text: bytes) -> str:
    """The exposition with the ``_created`` values (timestamps) blanked."""
    return re.sub(r"^(\w+_created\{[^}]*\}) .*$", r"\1 T", text.decode(), flags=re.M)


@settings(max_examples=60, deadline=None)
@given(counts=st.lists(st.tuples(_LABEL, _LABEL, st.integers(0, 5)), max_size=30),
       latencies=st.lists(st.tuples(_LABEL, _SECONDS), max_size=60))
def test_tallies_expose_what_prometheus_clients_own_metrics_would(counts: list[tuple[str, str, int]],
                                                                   latencies: list[tuple[str, float]]) -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    counter = Counter("t_requests", "Requests by a and b", ["a", "b"], registry=theirs)
    histogram = Histogram("t_latency_seconds", "Latency", ["kind"], buckets=_BUCKETS, registry=theirs)
    tally, latency = CountTally("t_requests", "Requests by a and b", ["a", "b"]), LatencyTally(
        "t_latency_seconds", "Latency", "kind", _BUCKETS)
    ours.register(tally)
    ours.register(latency)
    for a, b, amount in counts:
        counter.labels(a=a, b=b).inc(amount)
        tally.add((a, b), amount)
    for kind, seconds in latencies:
        histogram.labels(kind=kind).observe(seconds)
        latency.observe(kind, seconds)
    assert _masked(generate_latest(ours)) == _masked(generate_latest(theirs))
    for a, b, _ in counts:
        assert tally.value((a, b)) == counter.labels(a=a, b=b)._value.get()
    for kind, _ in latencies:
        assert latency.count(kind) == sum(1 for k, _ in latencies if k == kind)


def test_a_counter_refuses_what_prometheus_refuses() -> None:
    tally = CountTally("t_total", "T", ["a"])
    with pytest.raises(ValueError, match="non-negative"):
        tally.add(("x",), -1)
    with pytest.raises(ValueError, match="takes labels"):
        tally.add(("x", "y"))
    assert tally.value(("x",)) == 0
    tally.add(("x",), 2)
    with pytest.raises(ValueError, match="non-negative"):  # a known series too: a counter never goes down
        tally.add(("x",), -1)
    assert tally.value(("x",)) == 2


def test_the_registry_refuses_a_second_family_of_a_tallys_name() -> None:
    registry = CollectorRegistry()
    registry.register(CountTally("t_requests", "Requests", ["a"]))
    registry.register(LatencyTally("t_latency_seconds", "Latency", "kind", _BUCKETS))
    with pytest.raises(ValueError, match="Duplicated"):
        Counter("t_requests", "Requests again", ["a"], registry=registry)
    with pytest.raises(ValueError, match="Duplicated"):
        Histogram("t_latency_seconds", "Latency again", ["kind"], registry=registry)


def test_created_series_follow_prometheus_clients_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """``disable_created_metrics()`` (or PROMETHEUS_DISABLE_CREATED_SERIES) drops ``_created`` from the tallies
    as from prometheus_client's own metrics."""
    registry = CollectorRegistry()
    tally, latency = CountTally("t_requests", "R", ["a"]), LatencyTally("t_latency_seconds", "L", "kind", _BUCKETS)
    registry.register(tally)
    registry.register(latency)
    tally.add(("x",))
    latency.observe("single", 0.001)
    assert b"t_requests_created" in generate_latest(registry) and b"t_latency_seconds_created" in generate_latest(registry)
    monkeypatch.setattr(prometheus_metrics, "_use_created", False)
    text = generate_latest(registry)
    assert b"_created" not in text and b't_requests_total{a="x"} 1.0' in text
