"""FaultRecord: proof flag, both clocks, JSON form, and refusal to judge an unproven fault."""

from __future__ import annotations

import json
import time

import pytest

from testkit.faults import FaultNotProven, FaultRecord
from testkit.faults.records import FaultClock


def test_a_clock_stamps_both_clocks_around_the_action() -> None:
    wall, mono = time.time(), time.monotonic()
    clock = FaultClock()
    record = clock.record("sigkill", True, "killed", pid=42)
    assert wall <= record.t_start <= record.t_end <= time.time()
    assert mono <= record.mono_start <= record.mono_end <= time.monotonic()
    assert record.evidence == {"pid": 42}


def test_window_is_relative_to_a_monotonic_origin() -> None:
    record = FaultRecord("power_cut", True, "", 100.0, 101.5, {}, mono_start=50.0, mono_end=50.25)
    assert record.window(origin_monotonic=40.0) == (10.0, 10.25)
    assert record.duration_s == 1.5


def test_require_raises_on_an_unproven_fault() -> None:
    unproven = FaultRecord("disk_full", False, "probe write succeeded", 1.0, 2.0)
    with pytest.raises(FaultNotProven, match="probe write succeeded") as raised:
        unproven.require()
    assert raised.value.record is unproven
    proven = FaultRecord("disk_full", True, "ENOSPC", 1.0, 2.0)
    assert proven.require() is proven


def test_to_dict_is_plain_json_and_evidence_is_read_only() -> None:
    record = FaultRecord("io_error", True, "1 injection", 1.0, 2.0, {"paths": ["/x"], "errno": 5})
    assert json.loads(json.dumps(record.to_dict()))["evidence"] == {"paths": ["/x"], "errno": 5}
    with pytest.raises(TypeError):
        record.evidence["errno"] = 28  # type: ignore[index]
