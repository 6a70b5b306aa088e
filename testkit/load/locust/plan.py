"""What every Locust process of one distributed run must agree on, read from its command line.

Master and workers are started with the same ``--testkit-*`` options (on one machine or many), so
each worker derives the same agents, the same event pools and the same planned arrival times
without any coordination beyond Locust's own.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["LocustPlan", "PlanError", "add_plan_arguments", "timespan_s"]

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def timespan_s(text: str) -> float:
    """``"90"``, ``"90s"``, ``"10m"``, ``"1h"`` as seconds (the shapes Locust's ``--run-time`` takes)."""
    text = text.strip().lower()
    unit = _UNITS.get(text[-1:], 0.0)
    number = text[:-1] if unit else text
    try:
        seconds = float(number) * (unit or 1.0)
    except ValueError:
        raise PlanError(f"not a duration: {text!r} (use 90, 90s, 10m or 1h)") from None
    if seconds <= 0:
        raise PlanError(f"a duration must be positive, got {text!r}")
    return seconds


class PlanError(ValueError):
    """A ``--testkit-*`` option is missing or out of range."""


def add_plan_arguments(parser: Any) -> None:
    """Register the ``--testkit-*`` options on Locust's argument parser (its ``init_command_line_parser``)."""
    group = parser.add_argument_group("testkit", "agent sessions, intended-time latency, HDR histograms")
    group.add_argument("--testkit-tokens", default="", help="file with one bearer token per line (agent i uses line i mod n)")
    group.add_argument("--testkit-out", default="", help="directory for results.json (master), journals and worker summaries")
    group.add_argument("--testkit-seed", type=int, default=7, help="seed of the agent sessions")
    group.add_argument("--testkit-user-rate", type=float, default=0.0,
                       help="open loop: events/s each simulated agent plans to send (0: the session's own think times)")
    group.add_argument("--testkit-batch", type=int, default=1, help="events per request (1: POST /events, more: /events/batch)")
    group.add_argument("--testkit-pool", type=int, default=200, help="events generated per agent up front, then replayed with fresh ids")
    group.add_argument("--testkit-think-scale", type=float, default=1.0, help="session mode: multiply the session's think times")
    group.add_argument("--testkit-max-think", type=float, default=5.0, help="session mode: longest pause, seconds")
    group.add_argument("--testkit-heartbeat-liveness", type=int, default=30,
                       help="master: seconds of missed worker heartbeats before a worker counts as gone (Locust's "
                            "3 drops busy workers on a loaded load machine and ends the test)")
    group.add_argument("--testkit-run-time", default="",
                       help="master: stop gracefully after this long (90, 90s, 10m, 1h), then quit. Use it instead of "
                            "--run-time, whose headless quit does not wait for the workers' last histograms")


@dataclass(frozen=True, slots=True)
class LocustPlan:
    tokens: tuple[str, ...]
    out_dir: Path
    seed: int
    user_rate: float
    batch: int
    pool: int
    think_scale: float
    max_think_s: float
    run_time_s: float = 0.0
    heartbeat_liveness: int = 30

    @property
    def open_loop(self) -> bool:
        return self.user_rate > 0

    @property
    def request_interval_s(self) -> float:
        """Open loop: the planned gap between one agent's requests."""
        return self.batch / self.user_rate

    @classmethod
    def from_options(cls, options: argparse.Namespace) -> LocustPlan:
        if not options.testkit_tokens:
            raise PlanError("--testkit-tokens FILE is required (one bearer token per line)")
        try:
            tokens = tuple(line.strip() for line in Path(options.testkit_tokens).read_text().splitlines() if line.strip())
        except OSError as exc:
            raise PlanError(f"cannot read --testkit-tokens: {exc}") from None
        if not tokens:
            raise PlanError(f"{options.testkit_tokens} holds no token")
        if not options.testkit_out:
            raise PlanError("--testkit-out DIR is required")
        if options.testkit_user_rate < 0:
            raise PlanError("--testkit-user-rate must be >= 0")
        if not 1 <= options.testkit_batch <= 1000:
            raise PlanError("--testkit-batch must be within 1..1000")
        if options.testkit_pool < options.testkit_batch:
            raise PlanError("--testkit-pool must hold at least one batch")
        out = Path(options.testkit_out)
        out.mkdir(parents=True, exist_ok=True)
        return cls(tokens, out, options.testkit_seed, options.testkit_user_rate, options.testkit_batch,
                   options.testkit_pool, options.testkit_think_scale, options.testkit_max_think,
                   timespan_s(options.testkit_run_time) if options.testkit_run_time else 0.0,
                   max(3, options.testkit_heartbeat_liveness))

    def describe(self) -> dict[str, Any]:
        return {"seed": self.seed, "user_rate": self.user_rate, "batch": self.batch, "pool": self.pool,
                "mode": "open-loop" if self.open_loop else "session think times", "think_scale": self.think_scale}
