"""The time a server says it spent on a request, from its W3C ``Server-Timing`` response header.

Beside the latency a client measures from the intended start, the server's own account of each request
splits a slow percentile in two: time inside the server (its parsing, storage, answer) and everything
else (the client's queue, its CPU, the network, the server's accept and parse before its timer starts).
A load generator records it when the system under test sends the header and leaves it out when not.
"""

from __future__ import annotations

import math
import re
from typing import Final

from testkit.percentiles import HOUR_NS

__all__ = ["server_time_ns"]

_DURATION: Final = re.compile(r";\s*dur\s*=\s*\"?([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\"?", re.IGNORECASE)
_DESCRIPTION: Final = re.compile(r"desc\s*=\s*\"(?:[^\"\\]|\\.)*\"", re.IGNORECASE)


def server_time_ns(header: str | None) -> int | None:
    """The longest ``dur`` (milliseconds) among the header's metrics, in nanoseconds: a server's total is at
    least any of its parts. ``None`` when the header is absent, names no duration or one over an hour
    (a histogram's range ends there; a bad header from the system under test must not break the recording)."""
    if not header:
        return None
    durations = [float(match) for match in _DURATION.findall(_DESCRIPTION.sub("desc=\"\"", header))]
    longest = max(durations, default=None)
    if longest is None or not math.isfinite(longest) or longest * 1e6 > HOUR_NS:  # beyond a recorder's range
        return None
    return max(1, round(longest * 1e6))
