"""The snapshot files themselves: names, key types, bytes, chain limits, what a save returns, stray files.

Written from the mutants that survived the first mutation run of ``lighthouse/snapshots.py``: each test
pins one behaviour a crash-safe snapshot store must keep and the older tests did not look at.
"""

from __future__ import annotations

import time
from pathlib import Path

import crc32c
import msgpack
import pytest

from lighthouse import InvalidSnapshot, SnapshotNotFound
from lighthouse.snapshots import _HEADER, _MAGIC, _MAX_CHAIN, SnapshotStore


@pytest.fixture
def snapshots(tmp_path: Path) -> SnapshotStore:
    return SnapshotStore(tmp_path / "snapshots", keep=2)


@pytest.mark.parametrize("name", ["agents-v2", "per_aggregate", "bridge.state", "a-b_c.d"])
def test_names_may_hold_dashes_underscores_and_dots(snapshots: SnapshotStore, name: str) -> None:
    snapshots.save(name, {"k": 1}, 3)
    assert snapshots.load(name).state == {"k": 1}


def test_a_bad_name_is_refused_with_a_reason(snapshots: SnapshotStore) -> None:
    with pytest.raises(InvalidSnapshot, match="letters, digits"):
        snapshots.save("../escape", {}, 1)


def test_a_save_returns_what_was_saved(snapshots: SnapshotStore) -> None:
    before = time.time()
    full = snapshots.save("p", {"a": 1}, 5)
    assert (full.name, full.at_sequence, full.state, full.incremental_chain) == ("p", 5, {"a": 1}, 0)
    assert before <= full.created_at <= time.time()
    delta = snapshots.save("p", {"a": 2}, 9, incremental=True)
    assert (delta.at_sequence, delta.state, delta.incremental_chain) == (9, {"a": 2}, 1)
    loaded = snapshots.load("p")
    assert (loaded.name, loaded.at_sequence, loaded.created_at) == ("p", 9, delta.created_at)


def test_integer_keys_and_bytes_values_round_trip(snapshots: SnapshotStore) -> None:
    state = {1: "one", "blob": b"\x00\xff\x10"}
    snapshots.save("p", state, 2)
    assert snapshots.load("p").state == state
    snapshots.save("p", {**state, 2: "two"}, 4, incremental=True)
    assert snapshots.load("p").state == {**state, 2: "two"}


def test_a_chain_never_grows_past_its_limit(snapshots: SnapshotStore) -> None:
    snapshots.save("p", {"n": 0}, 1)
    for n in range(1, _MAX_CHAIN + 1):
        assert snapshots.save("p", {"n": n}, n + 1, incremental=True).incremental_chain == n
    assert snapshots.save("p", {"n": "full"}, _MAX_CHAIN + 2, incremental=True).incremental_chain == 0
    assert snapshots.load("p").state == {"n": "full"}


def test_an_incremental_save_on_a_non_dict_base_is_a_full_one(snapshots: SnapshotStore) -> None:
    snapshots.save("p", [1, 2, 3], 1)
    saved = snapshots.save("p", {"a": 1}, 2, incremental=True)
    assert saved.incremental_chain == 0 and snapshots.load("p").state == {"a": 1}


def test_refusals_say_why(snapshots: SnapshotStore) -> None:
    snapshots.save("p", {"a": 1}, 5)
    with pytest.raises(InvalidSnapshot, match="needs a dict"):
        snapshots.save("p", [1], 6, incremental=True)
    with pytest.raises(InvalidSnapshot, match="base snapshot is at 5"):
        snapshots.save("p", {"a": 2}, 5, incremental=True)
    with pytest.raises(InvalidSnapshot, match="not serialisable"):
        snapshots.save("p", {"a": object()}, 7)
    with pytest.raises(SnapshotNotFound, match="'q'") as missing:
        snapshots.load("q")
    assert missing.value.details["name"] == "q"


def test_load_at_or_before_includes_the_bound(snapshots: SnapshotStore) -> None:
    for at in (5, 10, 15):
        snapshots.save("p", {"at": at}, at)
    assert snapshots.load("p", at_or_before=10).state == {"at": 10}
    assert snapshots.load("p", at_or_before=14).state == {"at": 10}


def test_stray_files_never_hide_real_snapshots(snapshots: SnapshotStore) -> None:
    snapshots.save("p", {"at": 3}, 3)
    folder = snapshots.root / "p"
    for stray in ("notes.snap", "latest.snap", "x.snap", "backup.snap", "zz.snap"):
        (folder / stray).write_bytes(b"not a snapshot")
    snapshots.save("p", {"at": 7}, 7)
    assert snapshots.load("p").state == {"at": 7}


def test_a_checksummed_record_that_is_not_a_snapshot_is_skipped(snapshots: SnapshotStore) -> None:
    snapshots.save("p", {"at": 3}, 3)
    payload = msgpack.packb([1, 2, 3])
    (snapshots.root / "p" / f"{9:020d}.snap").write_bytes(
        _HEADER.pack(_MAGIC, crc32c.crc32c(payload), len(payload)) + payload)
    assert snapshots.load("p").state == {"at": 3}


def test_retention_keeps_the_newest_fulls_and_the_deltas_on_them(snapshots: SnapshotStore) -> None:
    for at in (1, 2, 3, 4):
        snapshots.save("p", {"at": at}, at * 10)
        snapshots.save("p", {"at": at, "delta": True}, at * 10 + 1, incremental=True)
    kept = sorted(int(p.stem) for p in (snapshots.root / "p").glob("*.snap"))
    assert kept == [30, 31, 40, 41]
    assert snapshots.load("p").state == {"at": 4, "delta": True}
    assert snapshots.load("p", at_or_before=31).state == {"at": 3, "delta": True}
