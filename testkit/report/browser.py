"""Look at a report the way a reader does: a real headless Chromium at laptop width, a full-page screenshot.

Chromium is driven through chromedriver's W3C WebDriver HTTP API with httpx (already a dependency): a dozen
lines instead of selenium or playwright. ``python -m testkit.report.browser reports/chaos/index.html`` saves
``screenshot.png`` next to the report and prints what a reader sees (images, sections, matrix rows, horizontal
scrolling, console errors, load time). Where chromium or chromedriver is not installed (Debian: ``apt-get
install chromium chromium-driver``) it says so and exits 0: the screenshot is a courtesy, not a verdict.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

__all__ = ["CHROMEDRIVER", "CHROMIUM", "LAPTOP_WIDTH", "ChromeSession", "inspect_chaos_report", "main"]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
#: Flags for a headless Chromium that runs as root in a VM and makes no network traffic of its own.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1280,900")
STARTUP_DEADLINE_S = 60.0  # generous: a loaded 2-core CI runner can be slow to start a browser
#: The laptop width the chaos report must fit without horizontal scrolling.
LAPTOP_WIDTH = 1_400


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
          loadMs: Math.round((performance.getEntriesByType('navigation')[0] || {}).loadEventEnd || 0),
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


def main(argv: Sequence[str] | None = None) -> int:
    """Screenshot a report, say what the browser saw, and keep those facts as JSON next to the screenshot."""
    parser = argparse.ArgumentParser(prog="python -m testkit.report.browser", description=main.__doc__)
    parser.add_argument("report", type=Path, help="the HTML report to open")
    parser.add_argument("--screenshot", type=Path, default=None,
                        help="where to save the full-page PNG (default: screenshot.png next to the report)")
    args = parser.parse_args(argv)
    if not args.report.is_file():
        print(f"no report at {args.report}", file=sys.stderr)
        return 2
    if CHROMIUM is None or CHROMEDRIVER is None:
        print("screenshot skipped: headless Chromium is not installed (Debian packages chromium and "
              "chromium-driver)")
        return 0
    screenshot = args.screenshot or args.report.with_name("screenshot.png")
    with tempfile.TemporaryDirectory(prefix="testkit-chromium-") as profile:
        chrome = ChromeSession(Path(profile))
        try:
            seen = inspect_chaos_report(chrome, args.report, screenshot)
        finally:
            chrome.close()
    seen["report_bytes"] = args.report.stat().st_size
    seen["screenshot"] = str(screenshot)
    facts = screenshot.with_suffix(".json")
    facts.write_text(json.dumps(seen, indent=1, default=str), encoding="utf-8")
    horizontal = "scrolls horizontally" if seen["scrollWidth"] > seen["clientWidth"] else "no horizontal scrolling"
    print(f"{args.report} at {LAPTOP_WIDTH} px: {seen['images']} images ({seen['campaignImages']} campaign "
          f"pictures), sections {', '.join(seen['sections'])}; matrix {seen['matrixRowsVisible']}/{seen['matrixRows']} "
          f"rows visible; {horizontal}; {len(seen['errors'])} console errors; {seen['report_bytes']:,} bytes, "
          f"loaded in {seen['loadMs']} ms, page {seen['pageHeight']:,} px high; screenshot {screenshot}, facts {facts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
