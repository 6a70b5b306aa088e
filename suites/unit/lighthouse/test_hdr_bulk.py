"""``record_values`` leaves an HdrHistogram exactly as ``record_value`` one value at a time would: same
counts in every slot, total, minimum and maximum, and the same values refused (negative, beyond range)."""

from __future__ import annotations

from array import array

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram
from hypothesis import given, settings
from hypothesis import strategies as st

from lighthouse.hdr_bulk import record_values

pytestmark = pytest.mark.ci

# (lowest, highest, significant figures, counter bytes); a unit of 2**36 puts the mask's top bit past 2**53
_CONFIGS = [(1, 3_600_000_000, 2, 8), (1, 3_600_000_000_000, 3, 4), (1_000, 10**12, 3, 2), (1, 2**62, 1, 8),
            (2**36, 2**62, 5, 8)]
# powers of two and their neighbours are where a bucket ends; negatives and huge values are refused
_EDGES = st.integers(0, 62).flatmap(lambda k: st.sampled_from([(1 << k) - 1, 1 << k, (1 << k) + 1]))
_VALUES = st.one_of(st.integers(-10, 10**6), st.integers(0, 2**63 - 1), _EDGES)


def _state(histogram: HdrHistogram) -> tuple[list[int], int, int, int]:
    counts = np.ctypeslib.as_array(histogram.counts)[: histogram.counts_len].tolist()
    return counts, histogram.total_count, histogram.min_value, histogram.max_value


@pytest.mark.parametrize("config", _CONFIGS, ids=lambda c: f"{c[0]}..{c[1]}/{c[2]}/{c[3]}B")
@settings(max_examples=80, deadline=None)
@given(first=st.lists(_VALUES, max_size=300), second=st.lists(_VALUES, max_size=300))
def test_bulk_recording_equals_recording_each_value(config: tuple[int, int, int, int], first: list[int],
                                                    second: list[int]) -> None:
    lowest, highest, figures, word_size = config
    one_by_one, bulk = (HdrHistogram(lowest, highest, figures, word_size=word_size) for _ in range(2))
    for values in (first, second):  # twice: the second call adds to what the first left
        taken = sum(bool(one_by_one.record_value(v)) for v in values)
        assert record_values(bulk, array("q", values)) == taken
    assert _state(bulk) == _state(one_by_one)
    if one_by_one.get_total_count():
        assert bulk.get_value_at_percentile(99.0) == one_by_one.get_value_at_percentile(99.0)


def test_lists_other_arrays_and_an_empty_input_are_taken_too() -> None:
    histogram = HdrHistogram(1, 3_600_000_000, 2)
    assert record_values(histogram, []) == 0 and histogram.total_count == 0
    assert record_values(histogram, [5, 7, 7, 1_000_000]) == 4
    assert record_values(histogram, array("i", [7, 9])) == 2  # read as their values, not as raw int64 bytes
    assert record_values(histogram, [7, 2**64]) == 1  # beyond 64 bits: refused, as record_value refuses it
    assert histogram.get_count_at_value(7) == 4 and histogram.total_count == 7


def test_the_values_array_can_be_emptied_afterwards() -> None:
    """The alert window empties its array('q') after each bulk record: no view of it may outlive the call."""
    held = array("q", range(1, 2000))
    record_values(HdrHistogram(1, 3_600_000_000, 2), held)
    del held[:]
    held.append(5)
    assert held.tolist() == [5]
