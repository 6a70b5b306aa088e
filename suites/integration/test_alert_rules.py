"""The alert evaluator's thresholds and hysteresis, driven deterministically with a fake clock.

The live-server tests (test_alerts.py, test_health_transitions.py) show that real slowness, real I/O
errors and a really full disk reach these triggers; these tests pin down the exact semantics at the
lines: rise at the threshold, hold through the hysteresis band and the dwell time, fall below the
clear threshold.
"""

from __future__ import annotations

import pytest

from lighthouse.health import HealthState
from lighthouse.server.alerts import (
    APPEND_P99,
    DISK_USAGE,
    ERROR_RATE,
    AlertConfig,
    AlertEvaluator,
    AlertLevel,
    AlertRule,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def evaluator(usage: list[float] | None = None, **config: object) -> tuple[AlertEvaluator, FakeClock]:
    clock = FakeClock()
    cfg = AlertConfig(**{"window_seconds": 10.0, "window_buckets": 10, "min_samples": 20, "min_dwell_seconds": 2.0,
                         **config})  # type: ignore[arg-type]
    source = usage if usage is not None else [0.0]
    return AlertEvaluator(cfg, disk_path=None, clock=clock, disk_usage=lambda: source[0]), clock


def record(ev: AlertEvaluator, seconds: float, n: int, *, failed: int = 0) -> None:
    for i in range(n):
        ev.record_append(seconds, failed=i < failed)


def test_append_p99_rises_at_each_line_and_falls_after_the_window_and_dwell() -> None:
    ev, clock = evaluator()
    record(ev, 0.05, 30)
    assert not ev.evaluate() and ev.level(APPEND_P99) is AlertLevel.OK
    record(ev, 0.2, 30)  # p99 now 0.2 s: over the 0.1 s warning line
    (change,) = ev.evaluate()
    assert (change.rule, change.new, change.state) == (APPEND_P99, AlertLevel.WARNING, HealthState.DEGRADED)
    assert ev.state is HealthState.DEGRADED
    record(ev, 1.5, 30)  # over the 1 s critical line
    assert [c.new for c in ev.evaluate()] == [AlertLevel.CRITICAL]
    assert ev.state is HealthState.DEGRADED, "latency sheds load per principal; it never makes the store read-only"
    clock.advance(11)  # the slow samples leave the window
    record(ev, 0.01, 30)
    assert [c.new for c in ev.evaluate()] == [AlertLevel.OK]
    assert ev.state is HealthState.HEALTHY


def test_a_raised_level_is_held_for_the_dwell_time() -> None:
    ev, clock = evaluator(window_seconds=1.0)
    record(ev, 0.5, 30)
    assert [c.new for c in ev.evaluate()] == [AlertLevel.WARNING]
    clock.advance(1.5)  # the window is empty now, yet the level has been held only 1.5 of its 2 s
    assert ev.evaluate() == [] and ev.level(APPEND_P99) is AlertLevel.WARNING
    clock.advance(0.6)
    assert [c.new for c in ev.evaluate()] == [AlertLevel.OK]


def test_too_few_samples_never_raise_latency_or_error_rate() -> None:
    ev, _ = evaluator()
    record(ev, 5.0, 19, failed=10)
    assert ev.evaluate() == []
    assert ev.window_values()[APPEND_P99] is None and ev.window_values()[ERROR_RATE] is None


def test_error_rate_levels() -> None:
    ev, clock = evaluator()
    record(ev, 0.001, 100, failed=0)
    assert ev.evaluate() == []
    record(ev, 0.001, 100, failed=3)  # 3 / 200 = 1.5 % >= 1 % warning
    assert [(c.rule, c.new) for c in ev.evaluate()] == [(ERROR_RATE, AlertLevel.WARNING)]
    record(ev, 0.001, 50, failed=20)  # 23 / 250 = 9.2 % >= 5 % critical
    assert [(c.rule, c.new) for c in ev.evaluate()] == [(ERROR_RATE, AlertLevel.CRITICAL)]
    assert ev.state is HealthState.READ_ONLY
    clock.advance(11)
    record(ev, 0.001, 100)
    assert [(c.rule, c.new) for c in ev.evaluate()] == [(ERROR_RATE, AlertLevel.OK)]


def test_disk_usage_hysteresis_band_holds_the_level() -> None:
    usage = [0.80]
    ev, clock = evaluator(usage)
    assert ev.evaluate() == []
    usage[0] = 0.905
    assert [c.new for c in ev.evaluate()] == [AlertLevel.WARNING]
    usage[0] = 0.951
    assert [c.new for c in ev.evaluate()] == [AlertLevel.CRITICAL]
    clock.advance(5)
    for hovering in (0.949, 0.93, 0.91, 0.9001):  # below critical, but not below its 90 % clear line
        usage[0] = hovering
        assert ev.evaluate() == [], hovering
    usage[0] = 0.899  # below critical_clear: falls, but only to WARNING (above warning_clear 85 %)
    assert [c.new for c in ev.evaluate()] == [AlertLevel.WARNING]
    clock.advance(5)
    usage[0] = 0.86
    assert ev.evaluate() == []
    usage[0] = 0.849
    assert [c.new for c in ev.evaluate()] == [AlertLevel.OK]
    assert ev.state is HealthState.HEALTHY


def test_hovering_at_a_line_does_not_flap() -> None:
    usage = [0.0]
    ev, clock = evaluator(usage)
    changes = 0
    for step in range(200):
        usage[0] = 0.9 + (0.0005 if step % 2 else -0.0005)
        changes += len(ev.evaluate())
        clock.advance(0.25)
    assert changes == 1  # up once; never down, since 0.8995 stays above the 0.85 clear line


def test_each_trigger_state_is_configurable() -> None:
    rules = {DISK_USAGE: AlertRule(warning=0.5, critical=0.6, warning_state=HealthState.DEGRADED,
                                   critical_state=HealthState.DEGRADED)}
    usage = [0.7]
    ev, _ = evaluator(usage, rules=rules)
    ev.evaluate()
    assert ev.level(DISK_USAGE) is AlertLevel.CRITICAL and ev.state is HealthState.DEGRADED
    disabled, _ = evaluator([0.99], rules={DISK_USAGE: AlertRule(warning=0.5, critical=0.6, enabled=False)})
    assert disabled.evaluate() == [] and disabled.state is HealthState.HEALTHY


@pytest.mark.parametrize(
    "raw",
    [
        {"rules": {"cpu": {"warning": 1, "critical": 2}}},
        {"rules": {"disk_usage": {"warning": 0.9, "critical": 0.8}}},
        {"rules": {"disk_usage": {"warning": 0.9, "critical": 0.95, "colour": "red"}}},
        {"rules": {"disk_usage": {"warning": "high", "critical": 0.95}}},
        {"rules": {"disk_usage": {"warning": 0.9, "critical": 0.95, "critical_state": "panic"}}},
        {"rules": {"append_p99_seconds": {"warning": 0.1, "critical": 1.0, "critical_state": "read_only"}}},
        {"rules": {"append_p99_seconds": {"warning": 0.1, "critical": 1.0, "warning_state": "failed"}}},
        {"window_seconds": 0},
        {"min_samples": 2.5},
        {"evaluate_interval_seconds": True},
        {"speed": 1},
    ],
)
def test_bad_alert_configuration_is_refused(raw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        AlertConfig.from_dict(raw)


def test_a_latency_alert_can_never_refuse_writes() -> None:
    """Slowness is reported and shed per principal; read-only is for a store that cannot write safely."""
    with pytest.raises(ValueError, match="never refuses writes"):
        AlertConfig(rules={APPEND_P99: AlertRule(warning=0.1, critical=1.0, critical_state=HealthState.READ_ONLY)})
    ev, _ = evaluator([0.0])
    for _ in range(40):
        ev.record_append(5.0)
    assert [c.state for c in ev.evaluate() if c.rule == APPEND_P99] == [HealthState.DEGRADED]
    assert ev.state is HealthState.DEGRADED


def test_configuration_round_trips() -> None:
    config = AlertConfig.from_dict({"rules": {"error_rate": {"warning": 0.02, "critical": 0.1}}, "window_seconds": 5})
    again = AlertConfig.from_dict(config.to_dict())
    assert again == config and again.rules[ERROR_RATE].warning_clear == pytest.approx(0.018)


def test_a_sliding_window_leaves_no_histogram_for_the_cyclic_collector() -> None:
    """An HdrHistogram holds a reference cycle with its encoder, so one dropped is freed only by a collection
    of the generation it reached (a window's buckets live long enough to reach the oldest). The window reuses
    its buckets' and the merged histogram instead: a minute of rotating buckets and evaluations leaves none."""
    import gc

    from hdrh.histogram import HdrHistogram

    ev, clock = evaluator()
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for _ in range(60):  # six windows: every bucket expires and is replaced several times
            record(ev, 0.01, 25)
            ev.evaluate()
            clock.advance(1.0)
        gc.collect()
        dropped = [obj for obj in gc.garbage if isinstance(obj, HdrHistogram)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert ev.window_values()[APPEND_P99] is not None  # the window still judges what it holds
    assert dropped == [], f"{len(dropped)} histograms were left for the cyclic collector"


def test_the_windows_p99_counts_every_latency_recorded_in_bulk() -> None:
    """A bucket holds its latencies until it has ``_UNRECORDED_MAX`` of them or the window is read, then
    records them at once: the window's p99 is that of every latency still in it, recorded one by one."""
    from hdrh.histogram import HdrHistogram

    from lighthouse.server.alerts import _HIST_MAX_US, _UNRECORDED_MAX

    ev, clock = evaluator()
    per_second = [_UNRECORDED_MAX * 2 + 7, 13, _UNRECORDED_MAX - 1, 250]  # past the bound, and below it
    expected = []
    for second, count in enumerate(per_second):
        latencies = [0.001 * (4 - second) + 0.00001 * ((i * 37) % 400) for i in range(count)]  # slower first
        for seconds in latencies:
            ev.record_append(seconds)
        expected.append(latencies)
        clock.advance(1.0)
        if second == 1:
            ev.window_values()  # a read in between settles what is held; later ones add to it

    def p99_of(seconds_lists: list[list[float]]) -> float:
        reference = HdrHistogram(1, _HIST_MAX_US, 2)
        for seconds in (s for latencies in seconds_lists for s in latencies):
            reference.record_value(min(_HIST_MAX_US, max(1, int(seconds * 1e6))))
        return float(reference.get_value_at_percentile(99.0) / 1e6)

    assert ev.window_values()[APPEND_P99] == p99_of(expected)
    clock.advance(8.5)  # the first two seconds leave the 10 s window
    assert ev.window_values()[APPEND_P99] == p99_of(expected[2:]) < p99_of(expected)
    slow = [0.5] * 30
    for seconds in slow:  # held, never read: the bucket expires with them and is reused
        ev.record_append(seconds)
    clock.advance(11.0)
    fast = [0.002] * 40
    for seconds in fast:
        ev.record_append(seconds)
    assert ev.window_values()[APPEND_P99] == p99_of([fast])
