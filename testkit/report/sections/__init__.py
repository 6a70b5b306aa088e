"""One module per part of the report; each ``render_*`` returns a Section, or None when its data is absent."""

from testkit.report.sections.campaigns import render_campaigns
from testkit.report.sections.chaos import render_chaos
from testkit.report.sections.header import overall_verdict, render_header
from testkit.report.sections.latency import render_latency
from testkit.report.sections.memory import render_memory
from testkit.report.sections.perf import render_perf
from testkit.report.sections.regression import render_regression
from testkit.report.sections.tests import render_tests

__all__ = [
    "SECTION_RENDERERS",
    "overall_verdict",
    "render_campaigns",
    "render_chaos",
    "render_header",
    "render_latency",
    "render_memory",
    "render_perf",
    "render_regression",
    "render_tests",
]

#: The body of the page, in reading order: verdict-bearing sections first, the long test list last.
SECTION_RENDERERS = (render_chaos, render_campaigns, render_perf, render_latency, render_memory, render_regression,
                     render_tests)
