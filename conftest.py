"""Root pytest configuration for this repository's own suites (the testkit plugin itself is
registered by the ``pytest11`` entry point, so other projects get it without this file)."""

from __future__ import annotations

from pathlib import Path

import pytest

from testkit.speed import SpeedLines, judge_by_default

collect_ignore_glob = ["reports/*", "benchmarks/*"]

_ALWAYS_IN_CI = ("suites/unit", "suites/integration")
_ROOT = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark what `make test` runs: all unit and integration tests, plus the smoke subset of the rest."""
    for item in items:
        try:
            relative = item.path.relative_to(_ROOT).as_posix()
        except ValueError:
            continue
        if relative.startswith(_ALWAYS_IN_CI) or item.get_closest_marker("smoke") is not None:
            item.add_marker(pytest.mark.ci)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--speed-lines", choices=("auto", "judge", "report"), default="auto",
        help="judge ADR speed lines and peer ratios (make perf/load/soak) or only record them; "
             "auto: report in the `-m ci` selection (make test), judge otherwise")


@pytest.fixture
def speed_lines(request: pytest.FixtureRequest, testkit_record: object) -> SpeedLines:
    """Speed lines of this test: judged by benchmark runs, recorded but never failed in `make test`."""
    mode = request.config.getoption("speed_lines")
    judged = judge_by_default(request.config.option.markexpr) if mode == "auto" else mode == "judge"
    return SpeedLines(judged, testkit_record)
