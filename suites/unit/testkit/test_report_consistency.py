"""The report says nothing the results file does not: every matrix cell, headline count and percentile on the page
is checked against the results JSON by an oracle written here, independently of the renderer (raw JSON and the
``hdrh`` package, not the report's own code), and the oracle is shown to fail when one cell of the file changes.

What :func:`cross_check` compares, page against file:
1. every matrix cell (status, cases, proven, violations) of every row expected to hold, with cells the file does
   not count shown as ``not_run``, and no cell on the page that the file lacks;
2. the headline tiles: fault cases, faults proven (sums of each row's busiest cell), violations and red cells
   (sums over the cells), known-unsafe caught / total (``expectations`` entries with ``expected_unsafe``);
3. the verdict box: total violations, and per system under test its violations (``violations_by_sut``);
4. every percentile in the latency table against the HdrHistogram it came from (decoded with ``hdrh``) in the
   terminal summary's rounding (ms, three decimals), and, for one metric, against the plugin's own terminal line;
5. the campaign pictures: one per test that recorded an ``op_timeline``;
6. the peer card: absent unless a test without faults measured a figure against a peer.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hdrh.histogram import HdrHistogram

from testkit.percentiles import LatencyRecorder
from testkit.plugin import _ms
from testkit.report import render_report
from testkit.report.demo import crafted_run

KNOWN_BAD = "known-bad:"
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p99.9": 99.9, "p99.99": 99.99}


def crafted_document() -> dict[str, Any]:
    """A chaos + perf run with a red cell, a known-bad row, cells never run (typed_errors, corruption_detected
    counted only for corruption) and violations attributed to systems under test."""
    document = crafted_run(tests=60, seed=5)
    matrix = document["chaos_matrix"]
    for extra in ("corruption_detected", "typed_errors"):
        matrix["invariants"].append(extra)
        matrix["cells"]["corruption"][extra] = "pass"
        matrix["counts"]["corruption"][extra] = {"cases": 40, "proven": 40, "violations": 0}
    row = "known-bad:durability-none"
    matrix["faults"].append(row)
    matrix["cells"][row] = {"no_lost_ack": "fail"}
    matrix["counts"][row] = {"no_lost_ack": {"cases": 6, "proven": 6, "violations": 3}}
    matrix["violations_by_sut"][row] = {"lighthouse-durability-none": 3}
    return document


def attributes(tag: str) -> dict[str, str]:
    return dict(re.findall(r'data-([a-z-]+)="([^"]*)"', tag))


def section(page: str, anchor: str) -> str:
    found = re.search(rf'<section id="{anchor}".*?</section>', page, re.S)
    return found.group(0) if found else ""


def tiles(page: str, title: str) -> dict[str, str]:
    card = re.search(rf'<a class="summary-card[^"]*"[^>]*><div class="summary-title">.*?{re.escape(title)}</div>'
                     r"(.*?)</a>", page, re.S)
    if not card:
        return {}
    return {label.strip(): value for value, label in
            re.findall(r'<div class="figure-line[^"]*"><b>(.*?)</b>(.*?)</div>', card.group(1))}


def cross_check(page: str, document: dict[str, Any]) -> list[str]:
    """Every disagreement between the page and the results document (empty: they agree)."""
    problems: list[str] = []
    matrix = document.get("chaos_matrix") or {}
    rows = [f for f in matrix.get("faults", []) if not f.startswith(KNOWN_BAD)]
    invariants = matrix.get("invariants", [])
    shown = {(a["fault"], a["invariant"]): a for a in map(attributes, re.findall(r'<span class="cell[^>]*>', page))}
    expected_cells = {}
    for fault in rows:
        for invariant in invariants:
            counts = matrix.get("counts", {}).get(fault, {}).get(invariant, {})
            expected_cells[(fault, invariant)] = {
                "status": matrix.get("cells", {}).get(fault, {}).get(invariant, "not_run"),
                "cases": str(counts.get("cases", 0)), "proven": str(counts.get("proven", 0)),
                "violations": str(counts.get("violations", 0))}
    for key, want in expected_cells.items():
        got = shown.get(key)
        if got is None:
            problems.append(f"cell {key} missing from the page")
            continue
        for field in ("status", "cases", "proven", "violations"):
            if got[field] != want[field]:
                problems.append(f"cell {key} {field}: page {got[field]}, results {want[field]}")
    problems += [f"cell {key} on the page but not a row expected to hold" for key in set(shown) - set(expected_cells)]

    row_cases = {f: max((int(expected_cells[(f, i)]["cases"]), int(expected_cells[(f, i)]["proven"]))
                        for i in invariants) for f in rows}
    violations = sum(int(c["violations"]) for c in expected_cells.values())
    red = sum(c["status"] == "fail" for c in expected_cells.values())
    unsafe = [e for t in document["tests"] for e in t.get("expectations") or [] if e.get("expected_unsafe")]
    want_tiles = {
        "fault cases": f"{sum(c for c, _ in row_cases.values()):,}",
        "faults proven": f"{sum(p for _, p in row_cases.values()):,} / {sum(c for c, _ in row_cases.values()):,}",
        "violations (red cells)": f"{violations:,} ({red:,})",
    }
    if unsafe:
        caught = sum(bool(e["caught"]) for e in unsafe)
        want_tiles["known-unsafe caught"] = f"{caught:,} / {len(unsafe):,}"
    got_tiles = tiles(page, "Chaos: verdict, faults × invariants")
    for label, value in want_tiles.items():
        if got_tiles.get(label) != value:
            problems.append(f"headline {label!r}: page {got_tiles.get(label)!r}, results {value!r}")

    box = re.search(r'<div class="verdict-box[^"]*" data-fact="verdict"[^>]*>', page)
    if box is None or attributes(box.group(0)).get("violations") != str(violations):
        problems.append(f"verdict box: page {box and attributes(box.group(0))}, results {violations} violations")
    by_sut: dict[str, int] = {}
    for fault in rows:
        suts = (matrix.get("violations_by_sut") or {}).get(fault) or {}
        row_total = sum(int(expected_cells[(fault, i)]["violations"]) for i in invariants)
        if row_total and not any(suts.values()):
            suts = {"(system not recorded)": row_total}  # an older writer: the page must say it does not know
        for sut, found in suts.items():
            by_sut[sut] = by_sut.get(sut, 0) + found
    shown_suts = {a["sut"]: int(a["violations"]) for a in map(attributes, re.findall(r"<li data-sut[^>]*>", page))}
    if shown_suts != {s: n for s, n in by_sut.items() if n}:
        problems.append(f"verdict per system under test: page {shown_suts}, results {by_sut}")

    problems += check_percentiles(page, document)

    campaigns = sum(1 for t in document["tests"] if t.get("op_timeline"))
    pictures = page.count('<figure class="campaign-figure">')
    if pictures != campaigns:
        problems.append(f"campaign pictures: page {pictures}, results {campaigns} campaigns")
    peers = [t for t in document["tests"] if not t.get("faults") and t.get("metrics")]
    if "better than peer" in page and not peers:
        problems.append("a peer-ratio card although no test without faults measured a figure")
    return problems


def check_percentiles(page: str, document: dict[str, Any]) -> list[str]:
    """Each row of the percentile table against its metric's histogram, decoded here with hdrh."""
    problems = []
    table = re.search(r'<table[^>]*id="latency-percentiles".*?</table>', page, re.S)
    metrics = {(t["nodeid"], name): m for t in document["tests"] for name, m in (t.get("metrics") or {}).items()}
    if table is None:
        drawn = [key for key, m in metrics.items() if m.get("histogram")]
        return [f"no percentile table for {len(drawn)} histogram metrics"] if drawn else []
    body = table.group(0)[table.group(0).index("<tbody>"):]
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)
    if len(rows) != sum(1 for m in metrics.values() if m.get("histogram") and m.get("unit") in ("ns", "us", "ms", "s")):
        problems.append(f"percentile table has {len(rows)} rows for the results' histogram latency metrics")
    for row in rows:
        cells = re.findall(r"<td>(.*?)</td>", row, re.S)
        metric = metrics.get((cells[1], cells[0]))
        if metric is None or not metric.get("histogram"):
            problems.append(f"percentile row {cells[:2]} names no histogram metric in the results")
            continue
        histogram = HdrHistogram.decode(metric["histogram"])
        per_ns = {"ns": 1, "us": 1e3, "ms": 1e6, "s": 1e9}[metric.get("histogram_unit") or metric["unit"]]
        for key, text in re.findall(r'data-percentile="([^"]+)"[^>]*>([^<]*)<', row):
            value = histogram.get_max_value() if key == "max" else histogram.get_value_at_percentile(PERCENTILES[key])
            want = f"{value * per_ns / 1e6:.3f} ms"
            if text != want:
                problems.append(f"{cells[0]} of {cells[1]} {key}: page {text}, histogram {want}")
    return problems


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    folder = tmp_path_factory.mktemp("consistency")
    document = crafted_document()
    results = folder / "results.json"
    results.write_text(json.dumps(document))
    page = render_report(results, folder / "index.html").read_text(encoding="utf-8")
    return document, page


def test_every_cell_headline_and_percentile_agrees_with_the_results_file(rendered: tuple[dict[str, Any], str]) -> None:
    document, page = rendered
    assert cross_check(page, document) == []
    cells = re.findall(r'<span class="cell[^>]*>', page)
    assert len(cells) == 6 * 7  # every row expected to hold x every invariant: nothing hidden, nothing extra
    statuses = [attributes(c)["status"] for c in cells]
    assert statuses.count("not_run") == 2 * 5  # typed_errors and corruption_detected: counted for corruption only
    assert re.search(r'class="cell skip"[^>]*data-fault="sigkill" data-invariant="typed_errors"', page)
    assert 'data-fault="known-bad:durability-none"' not in page  # a known-unsafe row lives in its own table
    assert "durability-none" in section(page, "chaos")


@pytest.mark.parametrize("change", ["cell violations", "cell status", "cell cases", "histogram", "by sut"])
def test_the_cross_check_fails_on_a_results_file_with_one_cell_changed(
    rendered: tuple[dict[str, Any], str], change: str,
) -> None:
    document, page = rendered
    changed = copy.deepcopy(document)
    counts = changed["chaos_matrix"]["counts"]
    if change == "cell violations":
        counts["sigkill"]["order"]["violations"] += 1
    elif change == "cell status":
        changed["chaos_matrix"]["cells"]["power_cut"]["order"] = "fail"
    elif change == "cell cases":
        counts["disk_full"]["no_phantom"]["cases"] += 1
    elif change == "histogram":
        test = next(t for t in changed["tests"] if "append.p50" in t.get("metrics", {}))
        other = LatencyRecorder()
        other.record(7_000_000)
        test["metrics"]["append.p50"]["histogram"] = other.encode()
    else:
        changed["chaos_matrix"]["violations_by_sut"]["corruption"]["lighthouse"] = 1
    problems = cross_check(page, changed)
    assert problems, f"changing the {change} went unnoticed"
    print(f"{change}: {problems[:3]}")


def test_the_table_prints_what_the_terminal_prints(rendered: tuple[dict[str, Any], str]) -> None:
    """The plugin's terminal line and the page, for the same histogram: same digits."""
    document, page = rendered
    test = next(t for t in document["tests"] if "append.p50" in t.get("metrics", {}))
    summary = LatencyRecorder.decode(test["metrics"]["append.p50"]["histogram"]).summary()
    row = next(r for r in re.findall(r"<tr>(.*?)</tr>", page, re.S) if test["nodeid"] in r and "append.p50" in r)
    shown = dict(re.findall(r'data-percentile="([^"]+)"[^>]*>([^<]*)<', row))
    assert shown["p50"] == _ms(summary.p50_ns).replace("ms", " ms")
    assert shown["p99"] == _ms(summary.p99_ns).replace("ms", " ms")
    assert shown["max"] == _ms(summary.max_ns).replace("ms", " ms")


def test_a_chaos_only_report_shows_no_peer_card(tmp_path: Path) -> None:
    document = crafted_run(tests=10, seed=3, perf=False, load=False, memory=False)
    for test in document["tests"]:
        if test.get("faults"):  # what a chaos run records: seconds per cycle, for lighthouse and sqlite alike
            test["metrics"] = {"chaos.sigkill.cycle_seconds": {"value": 0.1, "unit": "s", "direction": "lower"}}
    twin = copy.deepcopy(next(t for t in document["tests"] if t.get("faults")))
    twin["nodeid"], twin["sut"] = twin["nodeid"].replace("lighthouse", "sqlite"), "sqlite"
    document["tests"].append(twin)
    page = render_report(document, tmp_path / "index.html").read_text(encoding="utf-8")
    assert 'id="perf"' not in page and "better than peer" not in page
    assert cross_check(page, document) == []
