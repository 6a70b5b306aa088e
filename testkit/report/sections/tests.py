"""Every test at a glance: counts by outcome, what failed (with the command to rerun it), what was skipped
and why, per-file totals, the slowest tests, and the full list collapsed. Tables only: with thousands of tests
the page must stay light, so nothing here is drawn per test."""

from __future__ import annotations

import pandas as pd

from testkit.report.formatting import format_duration_s
from testkit.report.html import Section, Tile, code, details, note, table
from testkit.report.inputs import ReportInput
from testkit.report.reproduce import single_test_command

__all__ = ["render_tests"]

#: Failures listed in full before the list is cut (the collapsed full table still has them all).
MAX_FAILURES = 200
SLOWEST = 15
_ORDER = ("failed", "error", "xpassed", "passed", "xfailed", "skipped")


def render_tests(data: ReportInput) -> Section | None:
    rows = [
        {
            "run": t.run.label,
            "test": t.nodeid,
            "file": t.nodeid.split("::", 1)[0],
            "outcome": t.test["outcome"],
            "duration": float(t.test.get("duration") or 0.0),
            "sut": t.test.get("sut") or "—",
            "seed": None if t.seed is None else str(t.seed),
            "rerun_seed": None if t.rerun_seed is None else str(t.rerun_seed),
            "reason": t.test.get("skipped_reason") or "",
        }
        for t in data.tests()
    ]
    if not rows:
        return None
    frame = pd.DataFrame(rows)
    counts = frame["outcome"].value_counts()
    failing = int(counts.get("failed", 0) + counts.get("error", 0))
    tiles = [Tile("tests", f"{len(frame):,}")]
    for outcome in _ORDER:
        if counts.get(outcome, 0):
            tone = {"failed": "fail", "error": "fail", "xpassed": "warn", "passed": "pass"}.get(outcome, "skip")
            tiles.append(Tile(outcome, f"{int(counts[outcome]):,}", tone))  # type: ignore[arg-type]
    multi_run = frame["run"].nunique() > 1
    parts = [f'<p class="note">{len(frame):,} tests, {format_duration_s(float(frame["duration"].sum()))} '
             "of test time in total.</p>"]
    parts.append(_failures(frame, multi_run))
    parts.append(_skipped(frame))
    parts.append(_per_file(frame))
    parts.append("<h3>Slowest tests</h3>")
    slowest = frame.nlargest(SLOWEST, "duration")
    parts.append(table(_shown(slowest, multi_run), badges=("outcome",), table_id="slowest-tests"))
    everything = frame.sort_values(["outcome", "test"], key=_outcome_key)
    parts.append(details(f"All {len(frame):,} tests (click a column header to sort)",
                         table(_shown(everything, multi_run), badges=("outcome",), table_id="all-tests")))
    return Section("tests", "Tests", "".join(parts), "fail" if failing else "pass", tuple(tiles))


def _failures(frame: pd.DataFrame, multi_run: bool) -> str:
    failed = frame[frame["outcome"].isin(["failed", "error"])]
    if failed.empty:
        return note("No test failed.", "pass")
    shown = failed.head(MAX_FAILURES).copy()
    shown["rerun"] = [code(single_test_command(t, s))
                      for t, s in zip(shown["test"], shown["rerun_seed"], strict=True)]
    columns = (["run"] if multi_run else []) + ["test", "outcome", "duration (s)", "sut", "rerun"]
    shown["duration (s)"] = shown["duration"].map(lambda d: f"{d:.3f}")
    cut = "" if len(failed) <= MAX_FAILURES else note(
        f"First {MAX_FAILURES} of {len(failed):,} failures; the full list is below.", "warn")
    return (f"<h3>Failed ({len(failed):,})</h3>" + cut
            + table(shown[columns], badges=("outcome",), raw_html=("rerun",)))


def _skipped(frame: pd.DataFrame) -> str:
    skipped = frame[frame["outcome"] == "skipped"]
    if skipped.empty:
        return ""
    grouped = (skipped.assign(reason=skipped["reason"].replace("", "(no reason given)"))
               .groupby("reason", sort=False)
               .agg(tests=("test", "size"), example=("test", "first"))
               .reset_index().sort_values("tests", ascending=False))
    return f"<h3>Skipped ({len(skipped):,}), by reason</h3>" + table(grouped[["reason", "tests", "example"]])


def _per_file(frame: pd.DataFrame) -> str:
    pivot = pd.crosstab(frame["file"], frame["outcome"]).rename_axis(index="file", columns=None)
    ordered = [o for o in _ORDER if o in pivot.columns]
    pivot = pivot[ordered]
    pivot.insert(0, "tests", pivot.sum(axis=1))
    pivot["time (s)"] = frame.groupby("file")["duration"].sum().map(lambda d: f"{d:.2f}")
    pivot = pivot.reset_index()
    return "<h3>By file</h3>" + table(pivot)


def _shown(frame: pd.DataFrame, multi_run: bool) -> pd.DataFrame:
    shown = frame.assign(**{"duration (s)": frame["duration"].map(lambda d: f"{d:.3f}")})
    shown["seed"] = shown["seed"].map(lambda s: "—" if s is None else s)
    columns = (["run"] if multi_run else []) + ["test", "outcome", "duration (s)", "sut", "seed"]
    return shown[columns]


def _outcome_key(column: pd.Series) -> pd.Series:
    if column.name == "outcome":
        return column.map({o: i for i, o in enumerate(_ORDER)})
    return column
