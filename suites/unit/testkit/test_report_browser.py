"""The generated report in a real headless Chromium: no console errors, every image decoded and drawn, the
sort script works, and a full-page screenshot is saved next to the results.

Chromium is driven through chromedriver's W3C WebDriver HTTP API with httpx (already a dependency): a dozen
lines instead of selenium or playwright. Skips, saying why, where chromium or chromedriver is not installed
(Debian: ``apt-get install chromium chromium-driver``).
"""

from __future__ import annotations

import base64
import re
import selectors
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from testkit.report import render_report
from testkit.report.demo import crafted_comparison, crafted_run
from testkit.results import read_json

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
#: Flags for a headless Chromium that runs as root in a VM and makes no network traffic of its own.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1280,900")
STARTUP_DEADLINE_S = 60.0  # generous: a loaded 2-core CI runner can be slow to start a browser

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="headless Chromium is not installed (Debian packages chromium and chromium-driver)",
)


class ChromeSession:
    """One chromedriver process and one browser session on it, spoken to over loopback HTTP."""

    def __init__(self, profile_dir: Path) -> None:
        assert CHROMEDRIVER is not None and CHROMIUM is not None
        self._driver = subprocess.Popen([CHROMEDRIVER, "--port=0"], stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True)
        port = self._announced_port()
        self._http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60.0)
        capabilities = {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {"binary": CHROMIUM,
                                   "args": [*CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}"]},
        }
        try:
            created = self._call("POST", "/session", {"capabilities": {"alwaysMatch": capabilities}})
        except BaseException:
            self.close()  # never leave a chromedriver behind
            raise
        self._session = f"/session/{created['sessionId']}"

    def _announced_port(self) -> int:
        """chromedriver picks a free port itself (--port=0) and prints it; read it with a deadline."""
        assert self._driver.stdout is not None
        deadline = time.monotonic() + STARTUP_DEADLINE_S
        said: list[str] = []
        with selectors.DefaultSelector() as selector:
            selector.register(self._driver.stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if not selector.select(timeout=deadline - time.monotonic()):
                    break
                line = self._driver.stdout.readline()
                if not line:
                    break
                said.append(line.strip())
                found = re.search(r"started successfully on port (\d+)", line)
                if found:
                    return int(found.group(1))
        self.close()
        raise RuntimeError(f"chromedriver did not announce its port within {STARTUP_DEADLINE_S:.0f} s; it said: "
                           f"{' | '.join(said) or 'nothing'}")

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self._http.request(method, path, json=body)
        value = response.json()["value"]
        if response.status_code != 200:
            raise RuntimeError(f"WebDriver {method} {path}: {value}")
        return value

    def open(self, path: Path) -> None:
        self._call("POST", f"{self._session}/url", {"url": path.resolve().as_uri()})

    def resize(self, width: int, height: int) -> None:
        self._call("POST", f"{self._session}/window/rect", {"width": width, "height": height})

    def run(self, script: str) -> Any:
        return self._call("POST", f"{self._session}/execute/sync", {"script": script, "args": []})

    def console(self) -> list[dict[str, Any]]:
        """Browser log entries since the last call (console messages, uncaught errors, failed loads)."""
        return list(self._call("POST", f"{self._session}/se/log", {"type": "browser"}))

    def full_page_png(self) -> bytes:
        shot = self._call("POST", f"{self._session}/goog/cdp/execute",
                          {"cmd": "Page.captureScreenshot", "params": {"format": "png", "captureBeyondViewport": True}})
        return base64.b64decode(shot["data"])

    def close(self) -> None:
        try:
            if hasattr(self, "_session"):
                self._http.delete(self._session)
        finally:
            if hasattr(self, "_http"):
                self._http.close()
            self._driver.terminate()
            try:
                self._driver.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._driver.kill()
                self._driver.wait()
            if self._driver.stdout is not None:
                self._driver.stdout.close()


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


#: The laptop width the chaos report must fit without horizontal scrolling.
LAPTOP_WIDTH = 1_400


def inspect_chaos_report(chrome: ChromeSession, report: Path, screenshot: Path) -> dict[str, Any]:
    """What a reader of a chaos report sees at 1,400 px: images, scrolling, the matrix, sorting, console errors.
    Also used by hand on a real run's ``reports/chaos/index.html``."""
    chrome.resize(LAPTOP_WIDTH, 900)
    chrome.open(report)
    seen = chrome.run("""
        const decoded = i => i.complete && i.naturalWidth > 0;
        const campaigns = Array.from(document.querySelectorAll('figure.campaign-figure img'));
        const matrix = document.getElementById('chaos-matrix');
        const wrap = matrix ? matrix.closest('.table-wrap') : null;
        const rows = matrix ? Array.from(matrix.tBodies[0].rows) : [];
        const visible = r => { const b = r.getBoundingClientRect(); return b.height > 0 && b.width > 0; };
        return {
          innerWidth: window.innerWidth,
          scrollWidth: document.documentElement.scrollWidth,
          clientWidth: document.documentElement.clientWidth,
          images: document.images.length,
          undecoded: Array.from(document.images).filter(i => !decoded(i)).map(i => i.alt),
          campaignImages: campaigns.length,
          widestImage: Math.max(0, ...Array.from(document.images).map(i => i.getBoundingClientRect().right)),
          sections: Array.from(document.querySelectorAll('section')).map(s => s.id),
          matrixRows: rows.length,
          matrixRowsVisible: rows.filter(visible).length,
          matrixBoxScrolls: wrap ? wrap.scrollHeight > wrap.clientHeight + 1 : null,
          matrixBoxWiderThanPage: wrap ? wrap.scrollWidth > wrap.clientWidth + 1 : null,
          pageHeight: document.documentElement.scrollHeight,
        };
    """)
    seen["cases_after_clicks"] = chrome.run("""
        const table = document.getElementById('chaos-matrix');
        if (!table) return null;
        const header = Array.from(table.tHead.rows[0].cells).find(c => c.textContent.trim() === 'cases');
        const column = Array.from(header.parentNode.children).indexOf(header);
        const read = () => Array.from(table.tBodies[0].rows).map(
            r => parseInt(r.cells[column].textContent.replace(/,/g, ''), 10));
        header.click();
        const ascending = read();
        header.click();
        return [ascending, read()];
    """)
    seen["errors"] = [entry for entry in chrome.console() if entry.get("level") in ("SEVERE", "WARNING")]
    screenshot.write_bytes(chrome.full_page_png())
    return seen


def test_chaos_report_reads_on_a_laptop(chrome: ChromeSession, results_dir: Path) -> None:
    """A chaos report at 1,400 px: one picture per campaign, no horizontal scrolling, the whole matrix without a
    scroll box, sorting, no console errors; the full-page screenshot is kept with the results."""
    document = crafted_run(tests=40, seed=31, perf=False, load=False, memory=False)
    results = results_dir / "chaos-results.json"
    results.write_text(__import__("json").dumps(document))
    report = render_report(results, results_dir / "chaos-report.html")
    expected = read_json(results)
    campaigns = sum(1 for t in expected["tests"] if t.get("op_timeline"))
    rows = sum(1 for f in expected["chaos_matrix"]["faults"] if not f.startswith("known-bad:"))

    seen = inspect_chaos_report(chrome, report, results_dir / "chaos-report-screenshot.png")
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
