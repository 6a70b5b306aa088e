"""The id table: whatever was added is found after any number of growths (which re-place every entry
in vectorised rounds), duplicates included, and nothing else is."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import psutil
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lighthouse.id_table import IdTable
from suites.unit.lighthouse.id_model import add_keys

pytestmark = pytest.mark.ci

# Keys from a narrow range share home slots, so probing runs long and wraps around the table's end.
_KEYS = st.one_of(st.integers(1, 64), st.integers(1, 2**63 - 1), st.integers(1, 8).map(lambda k: k << 40))


@pytest.mark.parametrize("filtered", [False, True], ids=["plain", "filtered"])
@settings(max_examples=60, deadline=None)
@given(runs=st.lists(st.lists(_KEYS, min_size=1, max_size=300), min_size=1, max_size=12),
       absent=st.lists(_KEYS, max_size=20))
def test_every_added_key_is_found_after_growing_and_no_other(runs: list[list[int]], absent: list[int],
                                                             filtered: bool) -> None:
    table, model, sequence = IdTable(capacity=4, filtered=filtered), defaultdict(list), 1
    for run in runs:
        sequence = add_keys(table, run, sequence, model)
    assert len(table) == sum(map(len, model.values()))
    assert table.capacity > 4 or len(table) <= 2  # it grew whenever it had to
    for key, sequences in model.items():
        assert sorted(table.candidates(key)) == sequences
        assert table.holds_any([key])
    missing = [key for key in absent if key not in model]
    assert table.holds_any(missing) is False
    for key in missing:
        assert table.candidates(key) == []
    present = list(model)
    for batch in (missing, missing + present[-1:], present[:1] + missing):  # a filter's vectorised test too
        assert table.holds_any(batch, np.asarray(batch, dtype=np.int64)) == (batch != missing)


def test_put_replaces_the_value_of_a_key_after_growth() -> None:
    table = IdTable(capacity=4)
    for key in range(1, 200):
        table.put(key, key * 10)
    table.put(7, 1)
    assert table.candidates(7) == [1] and table.candidates(8) == [80] and len(table) == 199


@settings(max_examples=60, deadline=None)
@given(before=st.lists(st.tuples(_KEYS, st.integers(1, 2**40)), max_size=200),
       puts=st.lists(st.tuples(_KEYS, st.integers(1, 2**40)), max_size=300))
def test_updated_is_a_copy_with_every_put_applied(before: list[tuple[int, int]], puts: list[tuple[int, int]]) -> None:
    base = IdTable(capacity=4)
    for key, value in before:
        base.put(key, value)
    expected = IdTable(capacity=4)
    for key, value in before + puts:
        expected.put(key, value)
    updated = base.updated([key for key, _ in puts], [value for _, value in puts])
    assert len(updated) == len(expected)
    for key in {key for key, _ in before + puts}:
        assert updated.candidates(key) == expected.candidates(key)
    assert [base.candidates(key) for key, _ in before] == [[dict(before)[key]] for key, _ in before]  # untouched


def test_a_fresh_large_table_takes_no_memory_until_its_slots_are_written() -> None:
    """Each checkpoint starts a live table of millions of slots on the event loop: filling it with zeros
    there held the loop 25-90 ms. Its pages must be the kernel's lazily zeroed ones."""
    process = psutil.Process()
    before = process.memory_info().rss
    table = IdTable(capacity=1 << 22)  # 2 x 32 MiB of slots
    allocated = process.memory_info().rss - before
    table.add_run(list(range(1, 1001)), 1)
    assert allocated < 4 << 20, f"a fresh table of 64 MiB made {allocated:,} bytes resident"
    assert table.candidates(500) == [500] and table.capacity == 1 << 22 and len(table) == 1000


@settings(max_examples=60, deadline=None)
@given(present=st.lists(_KEYS, min_size=1, max_size=400, unique=True), absent=st.lists(_KEYS, max_size=200))
def test_a_sealed_table_answers_holds_any_as_before_for_one_key_or_a_batch(present: list[int], absent: list[int]) -> None:
    table = IdTable(capacity=4)
    table.add_run(present, 1)
    absent = [key for key in absent if key not in set(present)]
    before = [table.holds_any([key]) for key in present + absent]
    table.seal()
    assert table.sealed
    assert [table.holds_any([key]) for key in present + absent] == before == [True] * len(present) + [False] * len(absent)
    for batch in (absent, absent + present[-1:], present[:1] + absent):  # the filter's vectorised path
        assert table.holds_any(batch, np.asarray(batch, dtype=np.int64)) == (batch != absent)
    with pytest.raises(RuntimeError, match="sealed"):
        table.add(present[0], 9)
    with pytest.raises(RuntimeError, match="sealed"):
        table.add_run([present[0]], 9)


def test_a_sealed_tables_filter_rules_out_most_absent_keys() -> None:
    """The point of sealing: a full table's absent keys no longer probe (16 bits per entry: ~6% pass)."""
    rng = np.random.default_rng(3)
    table = IdTable(capacity=IdTable.capacity_for(50_000))
    table.add_run(rng.integers(1, 1 << 62, 50_000).tolist(), 1)
    table.seal()
    absent = rng.integers(1, 1 << 62, 10_000).tolist()
    passed_one_by_one = table._past_filter(absent, None)
    passed_at_once = table._past_filter(absent, np.asarray(absent, dtype=np.int64))
    assert passed_one_by_one == passed_at_once
    assert len(passed_at_once) < 0.1 * len(absent), len(passed_at_once)


def test_a_filtered_tables_filter_rules_out_most_absent_keys_as_it_fills_and_grows() -> None:
    """The event ids' live table: its filter is kept as keys come (one at a time or in short or long runs, through growth)
    and kept when sealed, so a batch's absent ids rarely probe."""
    rng = np.random.default_rng(5)
    table = IdTable(capacity=1024, filtered=True)
    present = rng.integers(1, 1 << 62, 40_000).tolist()
    for start in range(0, len(present), 100):
        run = present[start:start + 100]
        if not start % 1000:
            for offset, key in enumerate(run):
                table.add(key, start + 1 + offset)
        elif not start % 300:  # short runs: placed and marked in Python
            for offset in range(0, len(run), 20):
                table.add_run(run[offset:offset + 20], start + 1 + offset)
        else:  # long runs: with numpy
            table.add_run(run, start + 1)
    assert table.capacity >= IdTable.capacity_for(len(present))  # it grew: the filter was remade at each doubling
    absent = rng.integers(1, 1 << 62, 10_000).tolist()
    at_once = table._past_filter(absent, np.asarray(absent, dtype=np.int64))
    assert at_once == table._past_filter(absent, None)
    assert len(at_once) < 0.1 * len(absent), len(at_once)
    assert table._past_filter(present, np.asarray(present, dtype=np.int64)) == present  # never a present key
    kept = table._filter
    table.seal()
    assert table.sealed and table._filter is kept
    assert not table.holds_any(absent, np.asarray(absent, dtype=np.int64)) and table.holds_any(present[-1:])
