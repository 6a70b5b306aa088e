"""The layered event-id lookup answers exactly like a plain multimap, whatever its layers are.

``EventIds`` splits its entries between a sorted base, tables frozen by checkpoint snapshots, a
live table and the recent ids waiting for it; snapshots are merged off the loop and adopted later, or
never (a failed checkpoint).
Keys are drawn from a small range so that equal keys (hash collisions) happen often.
"""

from __future__ import annotations

import tracemalloc
from collections import defaultdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lighthouse import event_ids
from lighthouse.event_ids import EventIds, IdsSnapshot
from lighthouse.id_table import IdTable
from suites.unit.lighthouse.id_model import add_keys

pytestmark = pytest.mark.ci

_KEYS = st.integers(1, 40)
_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.lists(_KEYS, min_size=1, max_size=30)),
        st.tuples(st.just("snapshot"), st.sampled_from(["adopt", "adopt-late", "fail"])),
        st.tuples(st.just("adopt-pending"), st.just([])),
    ),
    max_size=25,
)


@settings(max_examples=150, deadline=None)
@given(ops=_OPS, probes=st.lists(_KEYS, max_size=10), settle_at=st.sampled_from([1, 7, 64, event_ids._SETTLE_AT]))
def test_layers_answer_like_a_plain_multimap(ops, probes, settle_at) -> None:
    ids, model = EventIds(settle_at=settle_at), defaultdict(list)
    pending: list[IdsSnapshot] = []
    sequence = 1
    for op, arg in ops:
        if op == "add":
            sequence = add_keys(ids, arg, sequence, model)
        elif op == "snapshot":
            snapshot = ids.snapshot()
            keys, values = snapshot.sorted_arrays() if arg != "fail" else (None, None)
            if keys is not None:
                assert np.all(keys[:-1] <= keys[1:])
                assert sorted(zip(keys.tolist(), values.tolist())) == sorted(
                    (k, s) for k, seqs in model.items() for s in seqs
                )
                assert len(snapshot) == len(keys)
            if arg == "adopt":
                ids.adopt(snapshot)
            elif arg == "adopt-late":
                pending.append(snapshot)
        else:
            for snapshot in pending:
                ids.adopt(snapshot)  # an older or already superseded snapshot is ignored
            pending.clear()
        assert len(ids) == sum(len(seqs) for seqs in model.values())
    for key in {*probes, *model}:
        assert sorted(ids.candidates(key)) == sorted(model.get(key, []))
    assert ids.holds_any(probes) == any(key in model for key in probes)


def test_a_snapshot_freezes_the_live_table_instead_of_copying_it() -> None:
    ids = EventIds(settle_at=1)
    ids.add_run(list(range(1, 5001)), 1)
    live = ids._live
    snapshot = ids.snapshot()
    assert snapshot.frozen == [live] and snapshot.frozen[0] is live  # handed over, not copied
    ids.add(9_999, 5001)  # appends after the snapshot go to a new live table
    assert len(live) == 5000 and ids.candidates(9_999) == [5001]
    keys, _values = snapshot.sorted_arrays()
    assert len(keys) == 5000 and 9_999 not in keys.tolist()
    ids.adopt(snapshot)
    assert ids._frozen == [] and len(ids.sorted_base()[0]) == 5000 and len(ids) == 5001


def test_the_next_interval_starts_with_room_for_as_many_ids_as_the_last_up_to_the_interval() -> None:
    ids = EventIds(settle_at=1)
    ids.add_run(list(range(1, 5001)), 1)  # grows from its first size on the way
    grown = ids._live.capacity
    snapshot = ids.snapshot(interval=10_000)
    snapshot.sorted_arrays()
    ids.adopt(snapshot)
    assert ids._live.capacity == grown > 1024  # a steady writer's next 5,000 ids need no growth on the loop
    ids.add_run(list(range(5001, 10001)), 5001)
    assert ids._live.capacity == grown and len(ids) == 10_000 and ids.candidates(7777) == [7777]
    ids.snapshot(interval=1000)  # e.g. a full scan's ids frozen by the first checkpoint: not the next size
    assert ids._live.capacity == IdTable.capacity_for(1000) < grown


def test_a_full_large_live_table_is_frozen_instead_of_grown(monkeypatch: pytest.MonkeyPatch) -> None:
    """Growing re-places every entry on the event loop (~140 ms at 650,000 ids): past ``_FREEZE_AT`` ids a
    full live table is frozen and a bigger one takes over; lookups span them, a checkpoint merges them."""
    regrown: list[int] = []
    grow = IdTable._grow

    def counting_grow(table: IdTable) -> None:
        regrown.append(len(table))
        grow(table)

    monkeypatch.setattr(IdTable, "_grow", counting_grow)
    ids, model = EventIds(), defaultdict(list)
    rng = np.random.default_rng(7)
    keys = rng.integers(1, 1 << 62, 200_000).tolist()
    sequence = 1
    for start in range(0, len(keys), 100):  # batches of 100, as appends come
        sequence = add_keys(ids, keys[start : start + 100], sequence, model)
    assert regrown and max(regrown) < event_ids._FREEZE_AT  # only small tables were grown
    assert len(ids._frozen) >= 1 and len(ids) == 200_000
    for key in keys[::997] + [keys[-1], 12345]:
        assert ids.candidates(key) == model.get(key, [])
    assert ids.holds_any([1, 2, keys[150_000]]) and not ids.holds_any([1, 2, 3])
    assert all(table.sealed for table in ids._frozen), "tables frozen full are sealed: a filter before their probes"
    in_frozen = [keys[1_000], keys[60_000]]  # in the first and a later frozen table
    assert ids.holds_any(in_frozen[:1]) and ids.holds_any(list(range(1, 20)) + in_frozen[1:])
    assert not ids.holds_any(list(range(1, 20)))
    snapshot = ids.snapshot(interval=1_000_000)
    assert len(snapshot) == 200_000
    assert ids._live.capacity == IdTable.capacity_for(200_000)  # sized for all the interval's ids, not the last table's
    snapshot.sorted_arrays()
    ids.adopt(snapshot)
    assert ids._frozen == [] and len(ids.sorted_base()[0]) == 200_000
    assert all(ids.candidates(key) == model[key] for key in keys[::991])


def test_tables_frozen_on_growth_after_a_snapshot_outlive_its_adoption(monkeypatch: pytest.MonkeyPatch) -> None:
    """A snapshot holds the tables frozen before it; a table frozen on growth while its checkpoint is written
    is not in it, so adopting it must drop only the snapshot's tables and keep the newer one searchable."""
    monkeypatch.setattr(event_ids, "_FREEZE_AT", 500)
    ids, model = EventIds(settle_at=1), defaultdict(list)
    sequence = 1
    for start in range(1, 801, 100):  # the first table (1,024 slots) froze when full
        sequence = add_keys(ids, list(range(start, start + 100)), sequence, model)
    snapshot = ids.snapshot(interval=100)  # a new live table of capacity_for(100) = 1,024 slots
    before = list(ids._frozen)
    for start in range(10_001, 11_501, 100):  # appends of 100 fill it: frozen on growth
        sequence = add_keys(ids, list(range(start, start + 100)), sequence, model)
    frozen_since = [table for table in ids._frozen if table not in before]
    assert frozen_since, "no table was frozen after the snapshot"
    snapshot.sorted_arrays()
    ids.adopt(snapshot)
    assert ids._frozen == frozen_since and len(ids.sorted_base()[0]) == 800
    assert len(ids) == 2300
    for key in [1, 400, 800, 10_001, 10_900, 11_500, 5_000]:
        assert ids.candidates(key) == model.get(key, []), key


def test_recent_ids_are_found_before_they_settle_and_settle_into_the_live_table_together() -> None:
    """New ids wait in the recent layer (placing each batch's ids in the table as it came cost ~1 us an id on
    the event loop) and go into the live table in one step when ``settle_at`` of them are there; a snapshot
    settles them first, so a checkpoint holds every id added before it."""
    ids, model = EventIds(settle_at=1000), defaultdict(list)
    sequence = 1
    for start in range(1, 901, 100):
        sequence = add_keys(ids, list(range(start, start + 100)), sequence, model)
    sequence = add_keys(ids, [77], sequence, model)  # an id seen again while recent: both sequences kept
    assert len(ids._live) == 0 and len(ids) == 901
    assert ids.candidates(77) == [77, 901] and ids.candidates(900) == [900] and ids.candidates(5000) == []
    assert ids.holds_any([5000, 450]) and not ids.holds_any([5000, 5001])
    sequence = add_keys(ids, list(range(1001, 1100)), sequence, model)  # the 1,000th id settles them all
    assert len(ids._live) == 1000 and len(ids) == 1000 and ids._recent == {}
    assert all(ids.candidates(key) == model[key] for key in model)
    sequence = add_keys(ids, [5000], sequence, model)
    snapshot = ids.snapshot()
    assert len(snapshot) == 1001 and ids._recent == {}
    keys, values = snapshot.sorted_arrays()
    assert sorted(zip(keys.tolist(), values.tolist())) == sorted((k, s) for k, seqs in model.items() for s in seqs)


@pytest.mark.parametrize("run_length", [1, 100])
def test_the_recent_ids_memory_is_what_nbytes_counts(run_length: int) -> None:
    """The soak's leak verdict judges RSS minus what the index counts: the recent layer's dict, runs, keys and
    sequences (as allocated, traced) must be what ``nbytes`` adds for them, within 15%."""
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        ids = EventIds(settle_at=1 << 20)
        counted_before, traced_before = ids.nbytes(), tracemalloc.get_traced_memory()[0]
        for first in range(1, 4001, run_length):
            ids.add_run([(1 << 62) + first + at for at in range(run_length)], (1 << 40) + first)
        counted = ids.nbytes() - counted_before
        traced = tracemalloc.get_traced_memory()[0] - traced_before
    finally:
        if not was_tracing:
            tracemalloc.stop()
    assert len(ids) == 4000 and len(ids._live) == 0
    assert abs(counted - traced) <= 0.15 * traced, (counted, traced)
