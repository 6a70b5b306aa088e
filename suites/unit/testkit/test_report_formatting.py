"""How the report words figures, verdicts, targets and rerun commands."""

from __future__ import annotations

import pandas as pd
import pytest

from testkit.report.formatting import format_duration_s, format_number, format_quantity, target_met, target_text, tone_of
from testkit.report.html import table
from testkit.report.reproduce import reproduce_command, single_test_command


@pytest.mark.parametrize(
    ("value", "unit", "shown"),
    [
        (1_530_000, "ns", "1.53 ms"),
        (850, "ns", "850 ns"),
        (0.25, "ms", "250 µs"),
        (2.5, "s", "2.50 s"),
        (310, "bytes", "310 B"),
        (3 * 1024**2, "bytes", "3 MiB"),
        (26_009.4, "events/s", "26,009 events/s"),
        (None, "ms", "—"),
    ],
)
def test_quantities_are_scaled_to_a_readable_unit(value: float | None, unit: str, shown: str) -> None:
    assert format_quantity(value, unit) == shown


def test_numbers_keep_three_significant_figures() -> None:
    assert format_number(0.012345) == "0.0123"
    assert format_number(12.345) == "12.3"
    assert format_number(12_345) == "12,345"
    assert format_duration_s(0.25) == "250 ms" and format_duration_s(300) == "5 min 00 s"


def test_targets_read_as_written_and_are_judged() -> None:
    assert target_text({"op": "<=", "value": 2_000_000}, "ns") == "≤ 2 ms"
    assert target_text(None, "ms") == "—"
    assert target_met(1.9, {"op": "<=", "value": 2.0}) is True
    assert target_met(9_000, {"op": ">=", "value": 10_000}) is False
    assert target_met(None, {"op": "<=", "value": 2.0}) is None


@pytest.mark.parametrize(
    ("verdict", "tone"),
    [("passed", "pass"), ("failed", "fail"), ("error", "fail"), ("regression", "fail"), ("warn", "warn"),
     ("improved", "pass"), ("skipped", "skip"), ("xfailed", "skip"), ("xpassed", "warn"), ("no leak", "pass"),
     ("leak", "fail"), ("insufficient_data", "skip"), (True, "pass"), (False, "fail"), (None, "info"),
     ("broken", "fail"), ("something else", "info")],
)
def test_verdict_words_get_their_colour(verdict: object, tone: str) -> None:
    assert tone_of(verdict) == tone


def test_rerun_commands_carry_the_seed_once() -> None:
    assert reproduce_command(["/repo/.venv/bin/pytest", "suites/chaos"], 7) == "pytest suites/chaos --testkit-seed 7"
    assert (reproduce_command(["/x/site-packages/pytest/__main__.py", "-k", "a b"], 7)
            == "python -m pytest -k 'a b' --testkit-seed 7")
    assert reproduce_command(["pytest", "--testkit-seed=3"], 3) == "pytest --testkit-seed=3"
    assert single_test_command("suites/a.py::test_x[1-2]", None) == "python -m pytest 'suites/a.py::test_x[1-2]'"


def test_tables_escape_cells_and_turn_verdict_columns_into_badges() -> None:
    frame = pd.DataFrame([{"name": "<b>x</b>", "verdict": "failed"}, {"name": "y & z", "verdict": None}])
    rendered = table(frame, badges=("verdict",))
    assert "&lt;b&gt;x&lt;/b&gt;" in rendered and "y &amp; z" in rendered
    assert '<span class="badge fail">failed</span>' in rendered
    assert '<span class="badge info">—</span>' in rendered
    assert 'class="dataframe data sortable"' in rendered
