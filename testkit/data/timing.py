"""When agents act: business hours, bursts, think times, expert latency and skewed clocks.

Time here is simulated (seconds since the epoch on a virtual clock), so a day of traffic is generated
in milliseconds and the same seed always gives the same timestamps.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Final

__all__ = ["DEFAULT_START", "TimingModel"]

#: Monday 2024-03-04 08:00:00 UTC: the first business morning of the default simulation.
DEFAULT_START: Final[float] = 1709539200.0
_DAY: Final[float] = 86400.0


@dataclass(frozen=True, slots=True)
class TimingModel:
    """Rates and latencies of the simulated team. Durations are in seconds of simulated time."""

    start: float = DEFAULT_START
    business_hours: tuple[int, int] = (8, 18)
    utc_offset_hours: float = 0.0
    activity_interval_s: float = 1.8  # mean think time between one agent's actions in business hours
    off_hours_factor: float = 0.05  # activity intensity at night and at weekends, relative to business hours
    session_gap_s: float = 600.0  # mean pause between an agent's sessions
    activities_per_session: float = 20.0  # mean (geometric) number of actions in one session
    burst_probability: float = 0.1  # share of sessions that start with a burst
    burst_factor: float = 10.0  # actions come this many times faster during a burst
    burst_duration_s: float = 300.0
    max_clock_skew_s: float = 2.0  # each agent's clock is off by a fixed uniform(-x, x)
    step_latency_s: tuple[float, float] = (0.0005, 0.02)  # bridge work between consecutive events of a flow
    expert_latency_s: tuple[float, float] = (1.0, 30.0)  # an expert's decision time (log-uniform)
    escalation_timeout_s: float = 30.0  # no expert answer by then: the bridge rejects (fails closed)

    def __post_init__(self) -> None:
        opens, closes = self.business_hours
        if not 0 <= opens < closes <= 24:
            raise ValueError(f"business_hours must satisfy 0 <= open < close <= 24, got {self.business_hours}")
        for name in ("activity_interval_s", "session_gap_s", "activities_per_session", "burst_factor",
                     "burst_duration_s", "escalation_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        if not 0 < self.off_hours_factor <= 1 or not 0 <= self.burst_probability <= 1:
            raise ValueError("need 0 < off_hours_factor <= 1 and 0 <= burst_probability <= 1")
        if self.max_clock_skew_s < 0:
            raise ValueError("max_clock_skew_s must be >= 0")
        for low, high in (self.step_latency_s, self.expert_latency_s):
            if not 0 <= low <= high:
                raise ValueError(f"latency range must satisfy 0 <= low <= high, got {(low, high)}")
        if self.expert_latency_s[0] <= 0:
            raise ValueError("expert_latency_s must start above 0")

    def in_business_hours(self, t: float) -> bool:
        local = t + self.utc_offset_hours * 3600.0
        days = math.floor(local / _DAY)
        weekday = (days + 3) % 7  # 1970-01-01 was a Thursday; Monday == 0
        hour = (local - days * _DAY) / 3600.0
        return weekday < 5 and self.business_hours[0] <= hour < self.business_hours[1]

    def next_opening(self, t: float) -> float:
        """The next moment business hours begin, at or after ``t``."""
        offset = self.utc_offset_hours * 3600.0
        day_start = math.floor((t + offset) / _DAY) * _DAY - offset
        for day in range(8):
            opening = day_start + day * _DAY + self.business_hours[0] * 3600.0
            if opening >= t and self.in_business_hours(opening):
                return opening
        raise AssertionError("a week always has a business morning")  # pragma: no cover

    def think_time(self, rng: random.Random, t: float, *, bursting: bool) -> float:
        mean = self.activity_interval_s
        if bursting:
            mean /= self.burst_factor
        if not self.in_business_hours(t):
            mean /= self.off_hours_factor
        return rng.expovariate(1.0 / mean)

    def next_session_start(self, rng: random.Random, t: float) -> float:
        """After a session ends at ``t``: most new sessions wait for business hours, a few happen at night."""
        candidate = t + rng.expovariate(1.0 / self.session_gap_s)
        if not self.in_business_hours(candidate) and rng.random() >= self.off_hours_factor:
            candidate = self.next_opening(candidate) + rng.uniform(0.0, 1800.0)
        return candidate

    def session_length(self, rng: random.Random) -> int:
        """Number of actions in a session: geometric with mean ``activities_per_session``, at least one."""
        p = 1.0 / max(1.0, self.activities_per_session)
        if p >= 1.0:
            return 1
        return 1 + int(math.log(1.0 - rng.random()) / math.log(1.0 - p))

    def step_latency(self, rng: random.Random) -> float:
        return rng.uniform(*self.step_latency_s)

    def expert_latency(self, rng: random.Random) -> float:
        low, high = self.expert_latency_s
        return math.exp(rng.uniform(math.log(low), math.log(high)))
