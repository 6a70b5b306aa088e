"""testkit.report on crafted results: each section appears exactly when its data exists, runs merge, bad input
fails clearly, and the page stays self-contained and light with thousands of tests."""

from __future__ import annotations

import base64
import copy
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from testkit.percentiles import LatencyRecorder
from testkit.regression import Baseline
from testkit.report import ReportError, render_html, render_report
from testkit.report.demo import crafted_comparison, crafted_run
from testkit.report.sections.latency import MAX_DISTRIBUTIONS, MAX_TIMELINES, histogram_unit
from testkit.results import SCHEMA_VERSION, ResultsSchemaError, RunResults

SECTIONS = ("chaos", "campaigns", "perf", "latency", "memory", "regression", "tests")


def section_ids(page: str) -> set[str]:
    return set(re.findall(r'<section id="([^"]+)"', page))


def section_html(page: str, anchor: str) -> str:
    match = re.search(rf'<section id="{anchor}".*?</section>', page, re.S)
    assert match, f"section {anchor!r} missing"
    return match.group(0)


def only_tests(document: dict[str, Any]) -> dict[str, Any]:
    """The document with nothing but plain tests: no chaos tests, metrics, timelines, faults, verdicts or extras."""
    stripped = {k: v for k, v in document.items()
                if k not in ("chaos_matrix", "memory", "skipped_mechanisms", "regression")}
    stripped["tests"] = [{k: v for k, v in t.items() if k not in ("metrics", "timelines", "faults", "verdicts")}
                         for t in document["tests"] if "/chaos/" not in t["nodeid"]]
    return stripped


@pytest.fixture(scope="module")
def full_run() -> dict[str, Any]:
    return crafted_run(tests=120, seed=11)


@pytest.fixture(scope="module")
def full_page(full_run: dict[str, Any]) -> str:
    comparison, baseline = crafted_comparison(full_run)
    return render_html(full_run, comparison=comparison, baseline=baseline)


# ------------------------------------------------------------------------------------------------ sections


def test_a_full_run_shows_every_section_and_the_header(full_run: dict[str, Any], full_page: str) -> None:
    assert section_ids(full_page) == set(SECTIONS)
    header = full_page[: full_page.index("</header>")]
    assert "--testkit-seed 11" in header  # the command to reproduce carries the seed
    assert full_run["environment"]["key"] in header  # the machine fingerprint
    assert full_run["environment"]["cpu_model"] in header
    assert 'class="verdict fail">failed<' in header
    assert "120 tests" in header


@pytest.mark.parametrize(
    ("missing", "options"),
    [
        ("chaos", {"chaos": False}),
        ("perf", {"perf": False}),
        ("latency", {"perf": False, "load": False}),
        ("memory", {"memory": False, "perf": False}),
    ],
)
def test_a_section_without_data_is_left_out(missing: str, options: dict[str, bool]) -> None:
    page = render_html(crafted_run(tests=30, **options))
    assert missing not in section_ids(page)
    assert f'href="#{missing}"' not in page  # nor linked from the navigation
    assert "tests" in section_ids(page)


def test_regression_appears_only_with_a_comparison(full_run: dict[str, Any], full_page: str) -> None:
    assert "regression" not in section_ids(render_html(full_run))
    regression = section_html(full_page, "regression")
    assert "regression</span>" in regression  # the verdict badge of testkit.regression
    assert "<img" in regression  # the distributions of both runs


def test_plain_tests_give_only_the_tests_section(full_run: dict[str, Any]) -> None:
    page = render_html(only_tests(full_run))
    assert section_ids(page) == {"tests"}


def test_a_run_without_tests_still_has_a_header_and_no_empty_section(full_run: dict[str, Any]) -> None:
    document = {**only_tests(full_run), "tests": []}
    page = render_html(document)
    assert section_ids(page) == set()
    assert "0 tests" in page and "<header" in page


@pytest.mark.parametrize("part", ["chaos_matrix", "skipped_mechanisms", "memory"])
def test_each_top_level_part_alone_brings_its_section(full_run: dict[str, Any], part: str) -> None:
    document = {**only_tests(full_run), part: copy.deepcopy(full_run[part])}
    expected = {"chaos_matrix": "chaos", "skipped_mechanisms": "chaos", "memory": "memory"}[part]
    assert section_ids(render_html(document)) == {"tests", expected}


# ------------------------------------------------------------------------------------------------ chaos


def test_chaos_lists_each_violation_with_its_events_seed_and_rerun_command(full_page: str) -> None:
    """The seed shown is the test's; the rerun command passes the run's seed, from which the plugin derives the
    test's seed again."""
    chaos = section_html(full_page, "chaos")
    block = chaos[chaos.index('class="violation"'):]
    assert "test_torn_tail_every_byte[lighthouse-frame-3]" in block
    assert "evt-004211" in block and "4212" in block  # the offending events
    assert "424242" in block  # the test's seed
    assert "--testkit-seed 11" in block  # and the command that replays it, with the run's seed it derives from


def test_chaos_keeps_sensitivity_catches_apart_from_violations(full_page: str) -> None:
    chaos = section_html(full_page, "chaos")
    violations = chaos[chaos.index("<h3>Violations"):chaos.index("<h3>What the known-unsafe")]
    assert "test_power_cut_catches_loss" not in violations
    assert "test_power_cut_catches_loss[durability_none]" in chaos[chaos.index("<h3>What the known-unsafe"):]


def test_chaos_matrix_cells_show_cases_proven_and_violations(full_run: dict[str, Any], full_page: str) -> None:
    chaos = section_html(full_page, "chaos")
    counts = full_run["chaos_matrix"]["counts"]["corruption"]["no_duplicate"]
    failing_cell = re.search(r'<span class="cell fail"[^>]*>(.*?)</span>', chaos, re.S)
    assert failing_cell
    assert f"<b>{counts['violations']}</b>" in failing_cell.group(1)
    assert f"{counts['cases']:,} cases<br>{counts['proven']:,} proven" in failing_cell.group(1)
    assert 'class="cell warn"' in chaos  # io_error: a fault that was not proven turns its cells amber


def test_skipped_mechanisms_are_shown_with_their_reason(full_page: str) -> None:
    chaos = section_html(full_page, "chaos")
    assert "tc netem" in chaos and "qdisc kind is unknown" in chaos
    assert "network namespaces need CAP_NET_ADMIN" in chaos  # a chaos test skipped with its reason


def test_without_a_matrix_the_tests_faults_and_verdicts_build_one(full_run: dict[str, Any]) -> None:
    document = {k: v for k, v in full_run.items() if k not in ("chaos_matrix", "skipped_mechanisms")}
    chaos = section_html(render_html(document), "chaos")
    assert "sigkill" in chaos and "durability" in chaos  # rows: fault kinds; columns: the checkers


# ------------------------------------------------------------------------------------------------ latency, perf, memory


def test_perf_table_has_target_ours_peer_ratio_and_verdict(full_page: str) -> None:
    perf = section_html(full_page, "perf")
    row = re.search(r"<tr>\s*<td>sustained_rate</td>(.*?)</tr>", perf, re.S)
    assert row, "sustained_rate row missing"
    cells = re.findall(r"<td>(.*?)</td>", row.group(1), re.S)
    assert cells[1] == "≥ 10,000 events/s"
    assert "events/s" in cells[2] and cells[3].startswith("sqlite: ")
    assert "× (better)" in cells[4]
    assert "pass" in cells[6]


def test_fault_windows_on_another_clock_are_not_shaded_but_said(full_run: dict[str, Any]) -> None:
    document = copy.deepcopy(only_tests(full_run))
    load = next(t for t in full_run["tests"] if "test_latency_under_faults" in t["nodeid"])
    epoch = copy.deepcopy(load)
    for fault in epoch["faults"]:
        fault["window"] = [1.7e9 + fault["window"][0], 1.7e9 + fault["window"][1]]
    document["tests"] = [load, {**epoch, "nodeid": epoch["nodeid"] + "-epoch"}]
    latency = section_html(render_html(document), "latency")
    assert "2 fault windows shaded" in latency
    assert "2 fault window(s) lie outside the timeline" in latency


def test_histogram_unit_is_read_or_inferred() -> None:
    recorder = LatencyRecorder()
    for value_ns in range(100_000, 2_000_000, 1_000):
        recorder.record(value_ns)
    p99_ms = recorder.percentile(99) / 1e6
    blob = recorder.encode()
    assert histogram_unit({"value": p99_ms, "unit": "ms", "histogram": blob, "histogram_unit": "ns"}) == "ns"
    # A writer that forgot histogram_unit: the value (ms) only fits the histogram's range when read as ns.
    assert histogram_unit({"value": p99_ms, "unit": "ms", "histogram": blob}) == "ns"
    assert histogram_unit({"value": recorder.percentile(99), "unit": "ns", "histogram": blob}) == "ns"


def test_memory_shows_the_leak_verdict_and_bytes_per_event(full_run: dict[str, Any], full_page: str) -> None:
    memory = section_html(full_page, "memory")
    assert ">no leak<" in memory and full_run["memory"]["leak"]["reason"] in memory
    assert "310 B/event" in memory
    leaking = copy.deepcopy(only_tests(full_run))
    leaking["memory"] = copy.deepcopy(full_run["memory"])
    leaking["memory"]["leak"] = {**leaking["memory"]["leak"], "leaking": True, "reason": "leaking: 9%/h"}
    memory = section_html(render_html(leaking), "memory")
    assert 'class="badge fail">leak<' in memory and "leaking: 9%/h" in memory
    unsure = copy.deepcopy(leaking)
    unsure["memory"]["leak"] = {**unsure["memory"]["leak"], "leaking": False, "inconclusive": True,
                                "reason": "inconclusive, no leak proven: 4%/h"}
    memory = section_html(render_html(unsure), "memory")
    assert 'class="badge warn">inconclusive<' in memory and "no leak proven: 4%/h" in memory
    assert ">no leak<" not in memory


@pytest.mark.parametrize(("column", "units", "values", "peak"), [
    ("rss_mb", {"rss_mb": "MB"}, [650.0, 700.0], "668 MiB"),  # 700e6 bytes
    ("rss_mb", None, [650.0, 700.0], "668 MiB"),  # the name says it
    ("rss", {"rss": "MiB"}, [600.0, 700.0], "700 MiB"),
    ("rss_bytes", None, [1.0e6, 2.0e6], "1.91 MiB"),
])
def test_a_memory_timeline_is_drawn_in_the_unit_it_was_written_in(
        full_run: dict[str, Any], column: str, units: dict[str, str] | None, values: list[float], peak: str) -> None:
    document = only_tests(full_run)
    timeline: dict[str, Any] = {"name": "memory", "t": [0.0, 1.0], "series": {column: values}}
    if units is not None:
        timeline["units"] = units
    document["tests"][0]["timelines"] = [timeline]
    memory = section_html(render_html(document), "memory")
    assert f"peak {peak}" in memory, re.findall(r"peak [^<]*", memory)


def test_plots_stay_few_however_many_tests_measure(full_run: dict[str, Any]) -> None:
    """One figure per measured quantity, a capped number of timelines: never one plot per test."""
    load = next(t for t in full_run["tests"] if "test_latency_under_faults" in t["nodeid"])
    perf = next(t for t in full_run["tests"] if "test_append_latency[lighthouse]" in t["nodeid"])
    tests = []
    for i in range(60):
        tests.append({**load, "nodeid": f"{load['nodeid']}-{i}"})
        tests.append({**perf, "nodeid": f"suites/perf/test_many.py::test_metric_{i}[lighthouse]"})
    page = render_html({**only_tests(full_run), "tests": tests})
    images = page.count("<img ")
    assert images <= MAX_DISTRIBUTIONS + MAX_TIMELINES + 2, images
    assert "more distributions not drawn" in page


# ------------------------------------------------------------------------------------------------ inputs


def test_several_results_files_merge_into_one_report(tmp_path: Path) -> None:
    chaos = crafted_run(tests=40, seed=3, perf=False, load=False, memory=False)
    perf = crafted_run(tests=20, seed=4, chaos=False, failures=False)
    paths = []
    for name, document in (("chaos.json", chaos), ("perf.json", perf)):
        paths.append(tmp_path / name)
        paths[-1].write_text(json.dumps(document))
    out = render_report(paths, tmp_path / "out" / "index.html")
    page = out.read_text(encoding="utf-8")
    assert {"chaos", "perf", "tests"} <= section_ids(page)
    header = page[: page.index("</header>")]
    assert "chaos.json: reproduce" in header and "perf.json: reproduce" in header
    assert f"{len(chaos['tests']) + len(perf['tests'])} tests" in header
    assert "--testkit-seed 3" in header and "--testkit-seed 4" in header


def test_run_results_objects_and_a_baseline_file_are_accepted(tmp_path: Path) -> None:
    current = crafted_run(tests=10, seed=5, chaos=False, load=False, memory=False)
    _, baseline = crafted_comparison(current)
    baseline_path = baseline.save(tmp_path / "baseline.json")
    page = render_html(RunResults.from_dict(current), baseline=baseline_path)
    assert "regression" in section_ids(page)
    assert isinstance(Baseline.load(baseline_path), Baseline)


@pytest.mark.parametrize(("version", "words"), [(SCHEMA_VERSION - 1, "older"), (SCHEMA_VERSION + 1, "newer")])
def test_another_schema_version_is_refused_clearly(tmp_path: Path, full_run: dict[str, Any], version: int,
                                                   words: str) -> None:
    path = tmp_path / "old-results.json"
    path.write_text(json.dumps({**full_run, "schema_version": version}))
    with pytest.raises(ResultsSchemaError, match=rf"old-results\.json: .*schema_version {version} is {words}"):
        render_report([path], tmp_path / "index.html")
    assert not (tmp_path / "index.html").exists()
    with pytest.raises(ResultsSchemaError, match="schema_version"):
        render_html({k: v for k, v in full_run.items() if k != "schema_version"})


def test_a_malformed_document_names_the_field(full_run: dict[str, Any]) -> None:
    broken = copy.deepcopy(full_run)
    broken["tests"][0]["outcome"] = "exploded"
    with pytest.raises(ResultsSchemaError, match=r"tests\[0\].*outcome"):
        render_html(broken)


def test_nothing_to_report_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="no results"):
        render_report([], tmp_path / "index.html")
    with pytest.raises(ReportError, match="cannot read results from int"):
        render_html([42])  # type: ignore[list-item]


# ------------------------------------------------------------------------------------------------ the page


def test_the_page_is_self_contained_and_every_image_is_an_inline_png(full_page: str) -> None:
    assert not re.search(r'(?:src|href)="(?:https?:)?//', full_page), "a reference leaves the file"
    assert "<link rel=\"stylesheet\"" not in full_page and "<script src" not in full_page
    sources = re.findall(r'<img [^>]*src="([^"]+)"', full_page)
    assert sources
    for source in sources:
        prefix = "data:image/png;base64,"
        assert source.startswith(prefix)
        assert base64.b64decode(source[len(prefix):])[:8] == b"\x89PNG\r\n\x1a\n"


def test_text_from_results_is_escaped(full_run: dict[str, Any]) -> None:
    document = copy.deepcopy(only_tests(full_run))
    document["tests"][0]["nodeid"] = "suites/unit/test_x.py::test_<script>alert(1)</script>"
    document["tests"][0]["outcome"] = "failed"
    page = render_html(document)
    assert "<script>alert(1)" not in page
    assert "test_&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_thousands_of_tests_render_in_seconds_into_a_reasonable_file(tmp_path: Path) -> None:
    document = crafted_run(tests=5_000, seed=8)
    started, cpu_started = time.perf_counter(), time.process_time()
    out = render_report(document, tmp_path / "index.html")
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    size = out.stat().st_size
    print(f"\n5,000 tests (plus chaos, perf, load, memory): rendered in {elapsed:.2f} s ({cpu:.2f} s CPU), "
          f"{size / 1024:.0f} KiB")
    # CPU, not wall time: make test runs beside CPU hogs (wall 48 s at load 10 here), and this only catches a
    # blow-up (about 8 s of CPU with 3 campaign pictures); speed is judged by the report benchmark, not here.
    assert cpu < 40.0
    assert size < 4 * 1024 * 1024
    page = out.read_text(encoding="utf-8")
    assert page.count("<tr>") > 5_000  # every test is listed (in the collapsed full table)
    assert page.count("<img ") < 15


def test_the_demo_benchmark_writes_a_report_and_prints_its_time_and_size(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from testkit.report.demo import main

    out = tmp_path / "demo" / "index.html"
    assert main(["--tests", "20", "--out", str(out), "--repeat", "1"]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"\d+ tests: rendered .*index\.html in [\d.]+ s .* \d+ KiB", printed), printed
    assert section_ids(out.read_text(encoding="utf-8")) == set(SECTIONS)


def test_a_baseline_from_another_machine_is_flagged_in_the_regression_section() -> None:
    current = crafted_run(tests=5, seed=6, chaos=False, load=False, memory=False, failures=False)
    elsewhere = copy.deepcopy(current)
    elsewhere["environment"]["cpu_model"] = "Some Other CPU @ 5 GHz"
    baseline = Baseline.from_results(RunResults.from_dict(elsewhere))
    regression = section_html(render_html(current, baseline=baseline), "regression")
    assert "machine fingerprints differ" in regression and "Some Other CPU" in regression


def test_one_test_measuring_two_stores_pairs_each_figure_with_its_peer(full_run: dict[str, Any]) -> None:
    """suites/perf records ``name[lighthouse]`` and ``name[sqlite]`` in one test; the perf table pairs them."""
    document = only_tests(full_run)
    test = dict(document["tests"][0], sut="lighthouse+sqlite", outcome="passed")
    test["metrics"] = {
        "append p99[lighthouse]": {"value": 0.99, "unit": "ms", "direction": "lower",
                                   "target": {"op": "<=", "value": 10.0}},
        "append p99[sqlite]": {"value": 0.5, "unit": "ms", "direction": "lower"},
    }
    # A durability verdict without an injected fault is not a chaos test.
    test["verdicts"] = [{"checker": "durability", "ok": True, "counts": {"acknowledged": 10}, "violations": []}]
    document["tests"] = [test]
    page = render_html(document)
    perf = section_html(page, "perf")
    assert "append p99" in perf and "append p99[" not in perf
    assert "sqlite: 500" in perf and "(worse)" in perf
    assert "chaos" not in section_ids(page)


def test_the_same_load_on_two_stores_is_drawn_side_by_side_with_its_bursts_shaded(full_run: dict[str, Any]) -> None:
    document = copy.deepcopy(only_tests(full_run))
    rows = {"t": [float(t) for t in range(20)], "series": {"p99": [1.0 + (5 <= t < 8) * 9 for t in range(20)],
                                                          "completed": [1000.0] * 20}, "units": {"p99": "ms"},
            "shaded": [[5.0, 8.0, "burst ×10"]]}
    test = {"nodeid": "suites/load/test_bursts.py::test_bursts", "outcome": "passed", "duration": 30.0,
            "sut": "lighthouse+sqlite",
            "timelines": [{**rows, "name": "burst [lighthouse]"}, {**rows, "name": "burst [sqlite]"}]}
    document["tests"] = [test]
    latency = section_html(render_html(document), "latency")
    assert latency.count("<img ") == 1  # one figure, two columns
    assert "the same load on 2 stores side by side; 2 windows shaded" in latency
    bad = copy.deepcopy(document)
    bad["tests"][0]["timelines"][0]["shaded"] = [[8.0, 5.0, "burst"]]
    with pytest.raises(ResultsSchemaError, match="ends before it starts"):
        render_html(bad)


def test_a_loss_under_a_test_that_xfailed_is_shown_as_a_declared_limitation_not_a_violation() -> None:
    """make chaos passes with SQLite's two declared limitations (xfail); the verdict box must not say it failed."""
    from testkit.report.facts import chaos_facts
    from testkit.report.inputs import read_inputs
    from testkit.report.sections.chaos import _verdict

    base = crafted_run(tests=1, seed=1)

    def document(outcome: str) -> dict[str, Any]:
        test = {"nodeid": "t.py::test_open_on_a_full_disk[sqlite]", "outcome": outcome, "duration": 1.0,
                "sut": "sqlite", "faults": [{"kind": "disk_full", "t": 0.0, "proven": True}]}
        return {**base, "tests": [test],
                "chaos_matrix": {"faults": ["disk_full[at open]"], "invariants": ["recovers"],
                                 "cells": {"disk_full[at open]": {"recovers": "fail"}},
                                 "counts": {"disk_full[at open]": {"recovers": {"cases": 1, "proven": 1, "violations": 1}}},
                                 "violations_by_sut": {"disk_full[at open]": {"sqlite": 1}}}}

    boxes = {outcome: _verdict(chaos_facts(read_inputs([document(outcome)]))) for outcome in ("xfailed", "failed")}
    assert 'class="verdict-box warn"' in boxes["xfailed"] and "declares" in boxes["xfailed"]
    assert 'class="verdict-box fail"' in boxes["failed"] and "declares" not in boxes["failed"]
