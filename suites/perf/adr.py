"""ADR-004's pass lines, in one place, in the units the figures are recorded in.

Source: /work/shared/reference/original-design.md ("ADR-004 in detail") and ARCHITECTURE.md section 4.
"""

from __future__ import annotations

from .figures import AdrLine

__all__ = [
    "APPEND_P50_MS",
    "APPEND_P95_MS",
    "APPEND_P99_MS",
    "APPEND_P999_MS",
    "BATCH_P99_MS",
    "BATCHED_EVENTS_PER_S",
    "BYTES_PER_1000_EVENTS",
    "FILTER_10000_P99_MS",
    "GET_BY_ID_P99_MS",
    "INDEX_BYTES_PER_1000_EVENTS",
    "RANGE_1000_P99_MS",
    "REPLAY_100000_S",
    "REPLAY_PEAK_BYTES",
    "SINGLE_WRITER_EVENTS_PER_S",
    "SUBSCRIPTION_DELIVERY_P99_MS",
]

APPEND_P50_MS = AdrLine("<=", 2, "append p50")
APPEND_P95_MS = AdrLine("<=", 5, "append p95")
APPEND_P99_MS = AdrLine("<=", 10, "append p99")
APPEND_P999_MS = AdrLine("<=", 100, "append p99.9")
BATCH_P99_MS = AdrLine("<=", 50, "batch p99")
BATCHED_EVENTS_PER_S = AdrLine(">=", 10_000, "10k events/s batched")
SINGLE_WRITER_EVENTS_PER_S = AdrLine(">=", 2_500, "2,500 events/s per core, single writer")
GET_BY_ID_P99_MS = AdrLine("<=", 1, "get by id p99")
RANGE_1000_P99_MS = AdrLine("<=", 100, "range of 1,000 p99")
FILTER_10000_P99_MS = AdrLine("<=", 500, "filter over 10,000 p99")
BYTES_PER_1000_EVENTS = AdrLine("<=", 1_000_000, "1 MB per 1,000 events")
INDEX_BYTES_PER_1000_EVENTS = AdrLine("<=", 100_000, "index 100 KB per 1,000 events")
REPLAY_100000_S = AdrLine("<=", 10, "replay 100,000 in 10 s")
REPLAY_PEAK_BYTES = AdrLine("<=", 10_000_000, "10 MB during replay")
SUBSCRIPTION_DELIVERY_P99_MS = AdrLine("<=", 100, "subscription delivery")
