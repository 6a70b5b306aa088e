"""The format-blind corruption campaign: proven damage, and a store that serves damaged rows is caught."""

from __future__ import annotations

import random
from pathlib import Path

from testkit.adapters import AdapterError, AdapterSpec
from testkit.adapters.sqlite import SqliteAdapter
from testkit.chaos.corruption import build_acknowledged_store, plan_file_damage, run_generic_corruption

LIGHTHOUSE = AdapterSpec("lighthouse", "testkit.adapters.lighthouse:LighthouseAdapter", {"segment_bytes": 8192})
SQLITE = AdapterSpec("sqlite", "testkit.adapters.sqlite:SqliteAdapter")


def test_damage_plans_are_seeded_and_every_case_changes_bytes(tmp_path: Path) -> None:
    store = build_acknowledged_store(SQLITE, tmp_path / "s", seed=3, operations=20)
    assert len(store.acknowledged) >= 20
    first = plan_file_damage(store.directory, random.Random(9), 12)
    assert first == plan_file_damage(store.directory, random.Random(9), 12)
    assert {d.kind for d in first} <= {"bit_flip", "zero_range", "truncate", "append"}


def test_a_checksummed_store_never_serves_a_wrong_event(tmp_path: Path) -> None:
    result = run_generic_corruption(LIGHTHOUSE, tmp_path, random.Random(5), 5, 40)
    assert result.tally.proven >= 36, result.tally
    assert not result.failures, result.failures[:3]
    assert result.catches == 0
    # The campaign's picture: the filling writes, every damage as a fault, every read-back as a cycle.
    timeline, _ = result.timeline.build()
    counts = result.parameters["generic_corruption"]
    assert len(timeline.faults) == result.tally.proven
    assert len(timeline.cycles) == counts["reported"] + counts["intact"] > 0
    assert all(intact <= acknowledged for _, _, acknowledged, intact in timeline.cycles)
    assert timeline.total_ops >= 40


def test_sqlite_without_page_checksums_is_caught_serving_damaged_rows(tmp_path: Path) -> None:
    """SQLite keeps no page checksums: zeroed or flipped row bytes are served as events nobody wrote."""
    result = run_generic_corruption(SQLITE, tmp_path, random.Random(11), 11, 120)
    assert result.tally.proven >= 100
    assert result.catches >= 1, result.parameters
    assert any("never acknowledged so" in f or "untyped" in f for f in result.failures)


def test_half_the_damages_land_in_the_files_the_events_grew(tmp_path: Path) -> None:
    """A server's cluster holds a thousand files besides its data; the events' files must still be reached."""
    for number in range(40):  # catalogs, WAL, configuration: files the appends never touched
        (tmp_path / f"catalog{number}").write_bytes(b"x" * 4096)
    (tmp_path / "events").write_bytes(b"e" * 4096)
    plan = plan_file_damage(tmp_path, random.Random(2), 200, grown=("events",))
    in_events = sum(damage.path == "events" for damage in plan)
    assert 70 <= in_events <= 130  # about half (1 in 41 without the preference)
    assert len({damage.path for damage in plan}) > 20  # the other half still goes anywhere


class PinnedStore(SqliteAdapter):
    """A store that refuses any directory but the one it was created in (a server's cluster copied elsewhere)."""

    async def open(self) -> None:
        marker = Path(self.data_dir) / "home"
        if marker.exists() and marker.read_text() != str(Path(self.data_dir).resolve()):
            raise AdapterError("this store was moved", code="store_unavailable")
        Path(self.data_dir).mkdir(parents=True, exist_ok=True)
        marker.write_text(str(Path(self.data_dir).resolve()))
        await super().open()


def test_a_store_whose_undamaged_copy_is_refused_cannot_be_judged(tmp_path: Path) -> None:
    """Every damaged copy refused (typed) would look like a careful store; the control copy says it is not."""
    pinned = AdapterSpec("pinned", f"{__name__}:PinnedStore")
    result = run_generic_corruption(pinned, tmp_path, random.Random(4), 4, 10)
    assert result.tally.cases == 0 and not result.caught  # no damaged copy was judged
    assert any("undamaged copy of the store does not read back" in f for f in result.failures), result.failures
