"""The generated report in a real headless Chromium: no console errors, every image decoded and drawn, the
sort script works, and a full-page screenshot is saved next to the results.

The browser driver is the kit's own (:mod:`testkit.report.browser`, also what ``make chaos`` uses for its
screenshot). Skips, saying why, where chromium or chromedriver is not installed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.report import render_report
from testkit.report.browser import CHROMEDRIVER, CHROMIUM, LAPTOP_WIDTH, ChromeSession
from testkit.report.browser import main as browser_main
from testkit.report.demo import crafted_comparison, crafted_run
from testkit.results import read_json

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="headless Chromium is not installed (Debian packages chromium and chromium-driver)",
)


@pytest.fixture
def chrome(tmp_path: Path) -> Iterator[ChromeSession]:
    session = ChromeSession(tmp_path / "chromium-profile")
    try:
        yield session
    finally:
        session.close()


@pytest.fixture
def results_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """``--testkit-results DIR`` when given (the screenshot is kept with the run's results), else tmp_path."""
    chosen = request.config.getoption("testkit_results", default=None)
    directory = Path(chosen) / "report-browser" if chosen else tmp_path
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def test_report_renders_in_chromium_without_errors(chrome: ChromeSession, results_dir: Path) -> None:
    current = crafted_run(tests=300, seed=21)
    comparison, baseline = crafted_comparison(current)
    report = render_report(current, results_dir / "report.html", comparison=comparison, baseline=baseline)
    expected_images = report.read_text(encoding="utf-8").count("<img ")

    chrome.open(report)
    chrome.run("return document.readyState")  # navigation returns once the page has loaded
    images = chrome.run(
        "return Array.from(document.images).map(i => ({alt: i.alt, complete: i.complete, "
        "width: i.naturalWidth, height: i.naturalHeight}))")
    sections = chrome.run("return Array.from(document.querySelectorAll('section')).map(s => s.id)")

    # Sorting: click the duration header of the slowest-tests table: ascending, then descending.
    durations_after_clicks = chrome.run("""
        const table = document.getElementById('slowest-tests');
        const header = Array.from(table.tHead.rows[0].cells).find(c => c.textContent.startsWith('duration'));
        const column = Array.from(header.parentNode.children).indexOf(header);
        const read = () => Array.from(table.tBodies[0].rows).map(r => parseFloat(r.cells[column].textContent));
        header.click();
        const ascending = read();
        header.click();
        return [ascending, read()];
    """)
    # Numbers sort as numbers, units scaled (900 µs below 1.2 ms).
    p99_ascending = chrome.run("""
        const table = document.getElementById('latency-percentiles');
        const header = Array.from(table.tHead.rows[0].cells).find(c => c.textContent.trim() === 'p99');
        const column = Array.from(header.parentNode.children).indexOf(header);
        header.click();
        return Array.from(table.tBodies[0].rows).map(r => r.cells[column].textContent.trim());
    """)
    errors = [entry for entry in chrome.console() if entry.get("level") in ("SEVERE", "WARNING")]
    screenshot = results_dir / "report-screenshot.png"
    screenshot.write_bytes(chrome.full_page_png())
    print(f"\nscreenshot of {report} saved to {screenshot}")

    assert errors == [], f"console errors: {errors}"
    assert set(sections) == {"chaos", "campaigns", "perf", "latency", "memory", "regression", "tests"}
    assert len(images) == expected_images > 0
    broken = [image["alt"] for image in images if not (image["complete"] and image["width"] > 0)]
    assert broken == [], f"images that did not render: {broken}"
    ascending, descending = durations_after_clicks
    assert ascending == sorted(ascending) and len(set(ascending)) > 1
    assert descending == sorted(ascending, reverse=True)
    in_seconds = [_seconds(text) for text in p99_ascending]
    # Numerically, not as text: "10.2 ms" after "9.8 ms" (the table prints ms with three decimals, as the terminal).
    assert in_seconds == sorted(in_seconds) and max(in_seconds) >= 10 * min(in_seconds)
    png = screenshot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    height = int.from_bytes(png[20:24], "big")
    assert height > 2_000  # the whole page, not just the first screen


def _seconds(text: str) -> float:
    number, unit = text.split()
    return float(number.replace(",", "")) * {"ns": 1e-9, "µs": 1e-6, "ms": 1e-3, "s": 1.0}[unit]


def test_a_script_error_would_be_caught(chrome: ChromeSession, tmp_path: Path) -> None:
    """The console check can fail: a page that throws shows up in the browser log."""
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><head><link rel='icon' href='data:,'></head>"
                    "<body><script>undefinedFunction();</script></body></html>")
    chrome.open(page)
    messages = [entry["message"] for entry in chrome.console() if entry.get("level") == "SEVERE"]
    assert any("undefinedFunction" in message for message in messages), messages



def test_chaos_report_reads_on_a_laptop(results_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A chaos report at 1,400 px: one picture per campaign, no horizontal scrolling, the whole matrix without a
    scroll box, sorting, no console errors; the full-page screenshot is kept with the results."""
    document = crafted_run(tests=40, seed=31, perf=False, load=False, memory=False)
    results = results_dir / "chaos-results.json"
    results.write_text(json.dumps(document))
    report = render_report(results, results_dir / "chaos-report.html")
    expected = read_json(results)
    campaigns = sum(1 for t in expected["tests"] if t.get("op_timeline"))
    rows = sum(1 for f in expected["chaos_matrix"]["faults"] if not f.startswith("known-bad:"))

    # Through the command ``make chaos`` runs after the suite: it keeps the screenshot and what it saw.
    screenshot = results_dir / "chaos-report-screenshot.png"
    assert browser_main([str(report), "--screenshot", str(screenshot)]) == 0
    said = capsys.readouterr().out
    seen = json.loads(screenshot.with_suffix(".json").read_text(encoding="utf-8"))
    assert f"{seen['images']} images ({seen['campaignImages']} campaign pictures)" in said
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"\nchaos report at {LAPTOP_WIDTH} px: {seen['images']} images ({seen['campaignImages']} campaigns), "
          f"sections {seen['sections']}, page {seen['pageHeight']} px high; screenshot in {results_dir}")

    assert seen["errors"] == [], f"console errors: {seen['errors']}"
    assert seen["campaignImages"] == campaigns > 0
    assert seen["undecoded"] == []
    assert seen["scrollWidth"] <= seen["clientWidth"], "the page scrolls horizontally at 1,400 px"
    assert seen["widestImage"] <= seen["clientWidth"]
    assert seen["matrixRows"] == seen["matrixRowsVisible"] == rows
    assert seen["matrixBoxScrolls"] is False and seen["matrixBoxWiderThanPage"] is False
    ascending, descending = seen["cases_after_clicks"]
    assert ascending == sorted(ascending) and len(set(ascending)) > 1
    assert descending == sorted(ascending, reverse=True)
    assert seen["sections"][:2] == ["chaos", "campaigns"]
