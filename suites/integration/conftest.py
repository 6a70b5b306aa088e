"""Fixtures: one real server process per test module (``server``), started on a free loopback port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .support import RunningServer, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server with default settings, shared by the tests of one module."""
    running = start_server(tmp_path_factory.mktemp("server"))
    try:
        yield running
    finally:
        status = running.stop()
        assert status == 0, f"server exited with {status}:\n{running.log()}"
