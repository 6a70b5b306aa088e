"""Self-contained HTML reports of testkit runs: chaos matrix, latency, memory, performance and regression.

``render_report(results, "reports/index.html")`` turns one or more results documents (see
``testkit/docs/results-schema.md``) into a single file with inline images that opens in any browser, offline.
"""

from testkit.report.builder import DEFAULT_TITLE, render_html, render_report
from testkit.report.inputs import ReportError

__all__ = ["DEFAULT_TITLE", "ReportError", "render_html", "render_report"]
