"""The pytest hook through which a conftest or plugin registers systems under test."""

from __future__ import annotations

from typing import Any

import pytest

__all__ = ["pytest_testkit_adapters"]


@pytest.hookspec
def pytest_testkit_adapters(config: pytest.Config) -> Any:
    """Return a :class:`~testkit.chaos.sut.SystemUnderTest`, a factory, or a list of them to test.

    Ignored when ``--testkit-adapter`` names adapters explicitly.
    """
