"""Fixtures: one real server process per test module (``server``), started on a free loopback port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .support import RunningServer, start_server


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Hypothesis-driven tests (the schemathesis fuzz run) draw from a seed derived from ``--testkit-seed``, so
    a CI run is reproduced by its printed seed (``--hypothesis-seed`` still wins when given)."""
    from hypothesis import seed

    from testkit.plugin import session_of

    if config.getoption("hypothesis_seed", None) is not None:
        return
    tk = session_of(config)
    for item in items:
        test = getattr(item, "obj", None)
        if getattr(test, "is_hypothesis_test", False):
            seed(tk.test_seed(item.nodeid))(test)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server with default settings, shared by the tests of one module."""
    running = start_server(tmp_path_factory.mktemp("server"))
    try:
        yield running
    finally:
        status = running.stop()
        assert status == 0, f"server exited with {status}:\n{running.log()}"
