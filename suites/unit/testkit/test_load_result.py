"""LoadResult and timelines: JSON round trips and exact merging."""

from __future__ import annotations

import asyncio
import json

import numpy as np

from testkit.load import ConstantRate, LoadResult, TimelinePoint, merge_timelines, run_open_loop
from testkit.load.timeline import TimelineRecorder
from testkit.percentiles import HistogramSpec, LatencyRecorder

NS = 1_000_000_000


def test_to_dict_is_json_and_round_trips() -> None:
    calls = 0

    def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls % 4 == 0:
            raise ValueError("bad")

    result = asyncio.run(run_open_loop(flaky, ConstantRate(400, 0.5), progress=None))
    document = json.loads(json.dumps(result.to_dict(timeline_histograms=True)))
    assert document["summaries"]["latency"]["count"] == result.completed
    assert document["errors_by_kind"] == {"ValueError": 50} and document["errors"] == 50
    assert document["achieved_rate"] == result.achieved_rate
    again = LoadResult.from_dict(document)
    assert again.latency == result.latency and again.service_time == result.service_time
    assert again.start_lag == result.start_lag and again.timeline == result.timeline
    assert (again.offered, again.completed, again.errors_by_kind) == (result.offered, result.completed,
                                                                      result.errors_by_kind)
    slim = result.to_dict(histograms=False)
    assert "histograms" not in slim and all("histogram" not in point for point in slim["timeline"])
    assert repr(result).startswith("<LoadResult open_loop") and "completed" in str(result)


def test_timelines_merge_exactly_like_one_recorder_fed_everything() -> None:
    spec = HistogramSpec()
    start = 10 * NS
    rng = np.random.default_rng(3)
    events = sorted(zip(rng.integers(start + NS // 10, start + 3 * NS, 3_000).tolist(),
                        rng.integers(1_000, 50_000_000, 3_000).tolist()))
    whole = TimelineRecorder(start, spec)
    parts = [TimelineRecorder(start, spec), TimelineRecorder(start, spec)]
    for index, (end, latency) in enumerate(events):
        whole.offered(end - latency)
        whole.completed(end, latency)
        parts[index % 2].offered(end - latency)
        parts[index % 2].completed(end, latency)
    merged = merge_timelines([part.finish() for part in parts], spec)
    assert merged == whole.finish()
    assert [p.second for p in merged] == [0, 1, 2]
    for point in merged:
        assert point.histogram is not None
        assert LatencyRecorder.decode(point.histogram).percentile(99) == point.p99_ns


def test_timeline_accepts_a_late_completion_for_a_closed_second() -> None:
    spec = HistogramSpec()
    timeline = TimelineRecorder(0, spec)
    timeline.completed(int(0.5 * NS), 100)
    timeline.completed(int(3.5 * NS), 300)  # second 0 is now encoded
    timeline.completed(int(0.9 * NS), 200)  # a straggler for second 0
    timeline.error(int(1.2 * NS))
    points = timeline.finish()
    assert [p.completed for p in points] == [2, 0, 0, 1] and points[1].errors == 1
    assert points[0].histogram is not None and points[0].max_ns is not None
    assert LatencyRecorder.decode(points[0].histogram).count == 2 and points[0].max_ns >= 200


def test_points_without_histograms_merge_counts_but_not_percentiles() -> None:
    spec = HistogramSpec()
    slim = TimelinePoint(0, 5, 5, 0, 1_000, 2_000, 2_000)  # e.g. reloaded from a summary without histograms
    merged = merge_timelines([[slim], [slim]], spec)
    assert merged[0].completed == 10 and merged[0].p99_ns is None
    assert TimelinePoint.from_dict(slim.to_dict()) == slim


def test_merge_of_results_adds_counts_and_histograms() -> None:
    first = asyncio.run(run_open_loop(lambda: None, ConstantRate(200, 0.5), progress=None))
    second = asyncio.run(run_open_loop(lambda: None, ConstantRate(100, 0.5), progress=None))
    merged = LoadResult.merge([first, second], mode="combined")
    assert merged.mode == "combined" and merged.offered == 150 and merged.completed == 150
    assert merged.latency == first.latency + second.latency
    assert merged.duration_s == max(first.duration_s, second.duration_s)
