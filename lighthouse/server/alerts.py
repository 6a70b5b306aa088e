"""Degradation triggers: append p99, error rate and disk usage, each with warning and critical levels.

A trigger's level rises as soon as its value crosses a threshold (and there is enough evidence), and
falls only after the value has dropped below a lower *clear* threshold and the level has been held
for ``min_dwell_seconds``: hysteresis, so a value hovering at a line does not flap the store between
states. Warning moves the server to ``degraded``, critical to ``read_only`` (configurable per
trigger). Values come from a sliding window of recent appends, so a trigger recovers by itself once
the window no longer holds the bad samples.

"Errors" are appends the store failed to perform (I/O failures, exhausted resources, unexpected
exceptions); client mistakes (4xx) and refusals while read-only are not errors: otherwise one buggy
agent could degrade the store, and a read-only store would keep itself read-only.
"""

from __future__ import annotations

import math
import os
import time
from array import array
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Final

from hdrh.histogram import HdrHistogram

from lighthouse.hdr_bulk import record_values
from lighthouse.health import HealthState

__all__ = [
    "APPEND_P99",
    "DISK_USAGE",
    "ERROR_RATE",
    "AlertChange",
    "AlertConfig",
    "AlertEvaluator",
    "AlertLevel",
    "AlertRule",
    "disk_usage_fraction",
]

APPEND_P99: Final[str] = "append_p99_seconds"
ERROR_RATE: Final[str] = "error_rate"
DISK_USAGE: Final[str] = "disk_usage"
_RULE_NAMES: Final[tuple[str, ...]] = (APPEND_P99, ERROR_RATE, DISK_USAGE)
_RANK: Final[dict[HealthState, int]] = {
    HealthState.HEALTHY: 0,
    HealthState.DEGRADED: 1,
    HealthState.READ_ONLY: 2,
    HealthState.FAILED: 3,
}
_HIST_MAX_US: Final[int] = 3_600_000_000
#: Latencies a bucket holds before recording them into its histogram: one numpy pass per this many appends
#: (hdrh's own ``record_value`` per append was half of ``record_append``'s 1.3 us).
_UNRECORDED_MAX: Final[int] = 1024
_REFUSING_STATES: Final[frozenset[HealthState]] = frozenset({HealthState.READ_ONLY, HealthState.FAILED})


class AlertLevel(IntEnum):
    OK = 0
    WARNING = 1
    CRITICAL = 2


@dataclass(frozen=True, slots=True)
class AlertRule:
    """Thresholds of one trigger. ``*_clear`` default to the threshold less ``hysteresis`` (a fraction)."""

    warning: float
    critical: float
    warning_clear: float | None = None
    critical_clear: float | None = None
    hysteresis: float = 0.1
    warning_state: HealthState = HealthState.DEGRADED
    critical_state: HealthState = HealthState.READ_ONLY
    enabled: bool = True

    def __post_init__(self) -> None:
        for name in ("warning", "critical", "hysteresis"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a non-negative number")
        if self.critical < self.warning:
            raise ValueError("critical must not be below warning")
        if not isinstance(self.enabled, bool):
            raise ValueError("enabled must be true or false")
        if not 0 <= self.hysteresis < 1:
            raise ValueError("hysteresis must be in [0, 1)")
        object.__setattr__(self, "warning_state", HealthState(self.warning_state))
        object.__setattr__(self, "critical_state", HealthState(self.critical_state))
        if self.warning_clear is None:
            object.__setattr__(self, "warning_clear", self.warning * (1 - self.hysteresis))
        if self.critical_clear is None:
            object.__setattr__(self, "critical_clear", self.critical * (1 - self.hysteresis))
        assert self.warning_clear is not None and self.critical_clear is not None
        if not (0 <= self.warning_clear <= self.warning and self.warning_clear <= self.critical_clear <= self.critical):
            raise ValueError("need 0 <= warning_clear <= warning, warning_clear <= critical_clear <= critical")

    def rising_level(self, value: float) -> AlertLevel:
        if value >= self.critical:
            return AlertLevel.CRITICAL
        if value >= self.warning:
            return AlertLevel.WARNING
        return AlertLevel.OK

    def falling_level(self, value: float) -> AlertLevel:
        """The level the value still justifies when judged against the (lower) clear thresholds."""
        assert self.warning_clear is not None and self.critical_clear is not None
        if value >= self.critical_clear:
            return AlertLevel.CRITICAL
        if value >= self.warning_clear:
            return AlertLevel.WARNING
        return AlertLevel.OK

    def state_for(self, level: AlertLevel) -> HealthState:
        if level is AlertLevel.CRITICAL:
            return self.critical_state
        if level is AlertLevel.WARNING:
            return self.warning_state
        return HealthState.HEALTHY

    def to_dict(self) -> dict[str, Any]:
        return {
            "warning": self.warning,
            "critical": self.critical,
            "warning_clear": self.warning_clear,
            "critical_clear": self.critical_clear,
            "hysteresis": self.hysteresis,
            "warning_state": self.warning_state.value,
            "critical_state": self.critical_state.value,
            "enabled": self.enabled,
        }


def _default_rules() -> dict[str, AlertRule]:
    # ADR-004: write p99 100 ms / 1 s; error rate 1% / 5%; storage 90% / 95%, writes resume below 90%.
    # Latency never makes the server read-only: slow appends are shed per principal (429, see
    # admission.py) by the clients causing them; read-only is for the store's inability to write safely.
    return {
        APPEND_P99: AlertRule(warning=0.1, critical=1.0, critical_state=HealthState.DEGRADED),
        ERROR_RATE: AlertRule(warning=0.01, critical=0.05),
        DISK_USAGE: AlertRule(warning=0.90, critical=0.95, warning_clear=0.85, critical_clear=0.90),
    }


@dataclass(frozen=True, slots=True)
class AlertConfig:
    """All triggers plus how they are measured.

    ``window_seconds``: how far back append latency and errors are judged. ``min_samples``: appends a
    window needs before latency or error rate may raise a level (one slow append is not a trend).
    """

    rules: Mapping[str, AlertRule] = field(default_factory=_default_rules)
    window_seconds: float = 10.0
    window_buckets: int = 10
    min_samples: int = 20
    min_dwell_seconds: float = 2.0
    evaluate_interval_seconds: float = 0.25

    def __post_init__(self) -> None:
        unknown = set(self.rules) - set(_RULE_NAMES)
        if unknown:
            raise ValueError(f"unknown alert rules {sorted(unknown)}; known: {list(_RULE_NAMES)}")
        merged = _default_rules()
        merged.update(self.rules)
        object.__setattr__(self, "rules", merged)
        latency = merged[APPEND_P99]
        if {latency.warning_state, latency.critical_state} & _REFUSING_STATES:
            # A slow disk or a busy machine is not a reason to refuse writes: latency is reported (health,
            # metrics, degradation events) and shed per principal; read-only is for being unable to write.
            raise ValueError(f"{APPEND_P99} may only degrade the server; a latency alert never refuses writes")
        if not 0 < self.window_seconds <= 3600:
            raise ValueError("window_seconds must be in (0, 3600]")
        if not 0.01 <= self.evaluate_interval_seconds <= 60:
            raise ValueError("evaluate_interval_seconds must be in [0.01, 60]")
        if not 0 <= self.min_dwell_seconds <= 3600:
            raise ValueError("min_dwell_seconds must be in [0, 3600]")
        if isinstance(self.window_buckets, bool) or not isinstance(self.window_buckets, int) or not 1 <= self.window_buckets <= 1000:
            raise ValueError("window_buckets must be an integer in 1..1000")
        if isinstance(self.min_samples, bool) or not isinstance(self.min_samples, int) or not 1 <= self.min_samples <= 1_000_000:
            raise ValueError("min_samples must be an integer in 1..1000000")

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> AlertConfig:
        """Parse ``{"rules": {name: {warning, critical, ...}}, "window_seconds": ...}``; ValueError if invalid."""
        if not isinstance(raw, Mapping):
            raise ValueError("alert configuration must be an object")
        known = {"rules", "window_seconds", "window_buckets", "min_samples", "min_dwell_seconds", "evaluate_interval_seconds"}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown alert settings {sorted(unknown)}")
        rules_raw = raw.get("rules", {})
        if not isinstance(rules_raw, Mapping):
            raise ValueError("rules must be an object")
        rules: dict[str, AlertRule] = {}
        for name, spec in rules_raw.items():
            if not isinstance(spec, Mapping):
                raise ValueError(f"rule {name!r} must be an object")
            allowed = set(AlertRule.__dataclass_fields__)
            bad = set(spec) - allowed
            if bad:
                raise ValueError(f"rule {name!r} has unknown fields {sorted(bad)}")
            if name == APPEND_P99:  # latency sheds load (admission.py) rather than refusing writes
                spec = {"critical_state": HealthState.DEGRADED, **spec}
            try:
                rules[str(name)] = AlertRule(**spec)
            except TypeError as exc:
                raise ValueError(f"rule {name!r}: {exc}") from None
        options = {k: v for k, v in raw.items() if k != "rules"}
        for key, value in options.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{key} must be a number")
        for key in ("window_buckets", "min_samples"):
            if key in options:
                if not float(options[key]).is_integer():
                    raise ValueError(f"{key} must be an integer")
                options[key] = int(options[key])
        return cls(rules=rules, **options)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rules": {name: rule.to_dict() for name, rule in self.rules.items()},
            "window_seconds": self.window_seconds,
            "window_buckets": self.window_buckets,
            "min_samples": self.min_samples,
            "min_dwell_seconds": self.min_dwell_seconds,
            "evaluate_interval_seconds": self.evaluate_interval_seconds,
        }


@dataclass(frozen=True, slots=True)
class AlertChange:
    rule: str
    old: AlertLevel
    new: AlertLevel
    value: float | None
    state: HealthState
    at: float


@dataclass(slots=True)
class _Bucket:
    started: float
    latency_us: HdrHistogram
    attempts: int = 0
    errors: int = 0
    #: latencies not yet in ``latency_us``: recorded in bulk (``hdr_bulk``), at most ``_UNRECORDED_MAX`` held
    unrecorded: array[int] = field(default_factory=lambda: array("q"))

    def settle(self) -> HdrHistogram:
        """The bucket's histogram with every latency in it."""
        if self.unrecorded:
            record_values(self.latency_us, self.unrecorded)
            del self.unrecorded[:]
        return self.latency_us


@dataclass(slots=True)
class _RuleStatus:
    level: AlertLevel = AlertLevel.OK
    since: float = 0.0
    value: float | None = None
    changes: int = 0


def disk_usage_fraction(path: str | os.PathLike[str]) -> float:
    """Share of the filesystem holding ``path`` that an unprivileged writer can no longer use."""
    stat = os.statvfs(path)
    if stat.f_blocks == 0:
        return 0.0
    return 1.0 - stat.f_bavail / stat.f_blocks


class AlertEvaluator:
    """Collects append outcomes and turns them, with disk usage, into trigger levels and a health state.

    Not thread-safe: call it from the event loop. ``clock`` (monotonic seconds) is injectable so the
    window and the dwell time can be driven deterministically.
    """

    def __init__(
        self,
        config: AlertConfig,
        *,
        disk_path: str | os.PathLike[str] | None,
        clock: Callable[[], float] = time.monotonic,
        disk_usage: Callable[[], float] | None = None,
    ) -> None:
        self._clock = clock
        self._disk_usage = disk_usage or ((lambda: disk_usage_fraction(disk_path)) if disk_path is not None else None)
        self._config = config
        self._buckets: list[_Bucket] = []
        # Expired buckets and the merged histogram are reset and reused, never dropped: an HdrHistogram holds a
        # reference cycle (with its encoder), so a dropped one is freed only by a collection of the generation it
        # reached, and a window's histograms live long enough to reach the oldest: with young collections rare (as
        # ``lighthouse serve`` sets them) the server's memory grew by ~180 KB/s until a full collection came.
        self._spare: list[_Bucket] = []
        self._merged = HdrHistogram(1, _HIST_MAX_US, 2)
        now = clock()
        self._status = {name: _RuleStatus(since=now) for name in _RULE_NAMES}
        self._state = HealthState.HEALTHY  # read on every request: worked out only when a level or rule changes
        self.evaluations = 0

    @property
    def config(self) -> AlertConfig:
        return self._config

    def reconfigure(self, config: AlertConfig) -> None:
        """New thresholds take effect at the next evaluation; the window keeps its samples."""
        self._config = config
        self._state = self._worst_state()

    def _bucket(self, now: float) -> _Bucket:
        width = self._config.window_seconds / self._config.window_buckets
        if self._buckets and now - self._buckets[-1].started < width:
            return self._buckets[-1]
        self._expire(now)
        if len(self._buckets) > self._config.window_buckets or self._spare:
            reused = self._buckets.pop(0) if len(self._buckets) > self._config.window_buckets else self._spare.pop()
            reused.latency_us.reset()
            del reused.unrecorded[:]
            reused.started, reused.attempts, reused.errors = now, 0, 0
            bucket = reused
        else:
            bucket = _Bucket(now, HdrHistogram(1, _HIST_MAX_US, 2))
        self._buckets.append(bucket)
        return bucket

    def _expire(self, now: float) -> None:
        horizon = now - self._config.window_seconds
        width = self._config.window_seconds / self._config.window_buckets
        while self._buckets and self._buckets[0].started + width <= horizon:
            self._spare.append(self._buckets.pop(0))

    def record_append(self, seconds: float, *, failed: bool = False) -> None:
        """One append attempt the store actually performed (or failed to perform)."""
        bucket = self._bucket(self._clock())
        bucket.attempts += 1
        if failed:
            bucket.errors += 1
        else:
            unrecorded = bucket.unrecorded
            unrecorded.append(min(_HIST_MAX_US, max(1, int(seconds * 1e6))))
            if len(unrecorded) >= _UNRECORDED_MAX:
                bucket.settle()

    def window_values(self, now: float | None = None) -> dict[str, float | None]:
        """Current values of every trigger (None: not enough evidence in the window)."""
        now = self._clock() if now is None else now
        self._expire(now)
        attempts = sum(b.attempts for b in self._buckets)
        errors = sum(b.errors for b in self._buckets)
        successes = attempts - errors
        p99: float | None = None
        if successes >= self._config.min_samples:
            merged = self._merged
            merged.reset()
            for bucket in self._buckets:
                histogram = bucket.settle()
                if histogram.get_total_count():
                    merged.add(histogram)
            p99 = merged.get_value_at_percentile(99.0) / 1e6
        rate = errors / attempts if attempts >= self._config.min_samples else None
        disk = self._disk_usage() if self._disk_usage is not None else None
        return {APPEND_P99: p99, ERROR_RATE: rate, DISK_USAGE: disk}

    def evaluate(self) -> list[AlertChange]:
        """Re-judge every trigger now; the level changes that happened."""
        now = self._clock()
        self.evaluations += 1
        try:
            values = self.window_values(now)
        except OSError:
            values = {APPEND_P99: None, ERROR_RATE: None, DISK_USAGE: None}
        changes: list[AlertChange] = []
        for name, rule in self._config.rules.items():
            status = self._status[name]
            value = values.get(name)
            status.value = value
            if not rule.enabled:
                target = AlertLevel.OK
            elif value is None:
                target = AlertLevel.OK  # no evidence of trouble in the window
            else:
                rising = rule.rising_level(value)
                target = rising if rising > status.level else min(status.level, rule.falling_level(value))
            if target < status.level and now - status.since < self._config.min_dwell_seconds:
                continue  # hold a raised level for the dwell time before letting it fall
            if target != status.level:
                changes.append(AlertChange(name, status.level, target, value, rule.state_for(target), now))
                status.level, status.since = target, now
                status.changes += 1
        self._state = self._worst_state()
        return changes

    @property
    def state(self) -> HealthState:
        """The worst state any trigger asks for."""
        return self._state

    def _worst_state(self) -> HealthState:
        worst = HealthState.HEALTHY
        for name, rule in self._config.rules.items():
            state = rule.state_for(self._status[name].level)
            if _RANK[state] > _RANK[worst]:
                worst = state
        return worst

    def level(self, name: str) -> AlertLevel:
        return self._status[name].level

    def reasons(self) -> dict[str, str]:
        """Active triggers, phrased like the store's health reasons."""
        out = {}
        for name, rule in self._config.rules.items():
            status = self._status[name]
            if status.level is not AlertLevel.OK:
                threshold = rule.critical if status.level is AlertLevel.CRITICAL else rule.warning
                out[f"alert:{name}"] = (
                    f"{rule.state_for(status.level).value}: {name} {status.value!r} >= {status.level.name.lower()} "
                    f"threshold {threshold}"
                )
        return out

    def snapshot(self) -> dict[str, dict[str, Any]]:
        out = {}
        for name, rule in self._config.rules.items():
            status = self._status[name]
            out[name] = {
                "level": status.level.name.lower(),
                "value": status.value,
                "state": rule.state_for(status.level).value,
                "changes": status.changes,
                **rule.to_dict(),
            }
        return out

