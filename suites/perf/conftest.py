"""Fixtures of the perf suite: both peers, the session's table of figures, stores filled once per session.

The table printed at the end lists every figure with lighthouse's value, SQLite's, their ratio and the ADR-004
line lighthouse is judged by (see ``figures.py``).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from testkit.aio import run_with_deadline

from .figures import FigureBook, PeerFigures
from .peers import PEER_NAMES, open_peers
from .workload import FILL_BATCH, FILLED_EVENTS, coordination_events

T = TypeVar("T")

_BOOK: pytest.StashKey[FigureBook] = pytest.StashKey()

Runner = Callable[..., Any]
Scaled = Callable[[float], float]


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_BOOK] = FigureBook()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    book = config.stash.get(_BOOK, None)
    if book is None or not book.rows:
        return
    terminalreporter.section("ADR-004 figures: lighthouse vs SQLite, measured in the same run")
    for line in book.table():
        terminalreporter.write_line(line)


def run_coroutine(coro: Coroutine[Any, Any, T], timeout: float = 300.0) -> T:
    """Run one coroutine on a fresh loop with a deadline, so a hang fails instead of stalling the suite."""
    return run_with_deadline(coro, timeout)


@pytest.fixture(scope="session")
def run() -> Runner:
    """``run(coro, timeout=300)``: the suite's way into asyncio."""
    return run_coroutine


@pytest.fixture
def figures(request: pytest.FixtureRequest, testkit_record: Any, speed_lines: Any) -> PeerFigures:
    """This test's figures for both peers (metrics, ratios, the session table, one ADR check at the end,
    judged by ``make perf`` and only recorded by ``make test``)."""
    testkit_record.sut = "+".join(PEER_NAMES)
    return PeerFigures(testkit_record, request.config.stash[_BOOK], request.node.nodeid, speed_lines)


@pytest.fixture(scope="session")
def scaled(testkit_scale: float) -> Scaled:
    """``scaled(5.0)``: a default duration in seconds times ``--testkit-duration``'s scale."""

    def seconds(default: float) -> float:
        return default * testkit_scale

    return seconds


async def fill(peers: dict[str, Any], count: int, *, batch: int = FILL_BATCH) -> None:
    """Append events ``0..count-1`` to every peer in batches (the bulk load before a read test)."""
    for peer in peers.values():
        for start in range(0, count, batch):
            await peer.append_batch(coordination_events(start, min(batch, count - start)))
        await peer.prepare_reads()


@pytest.fixture(scope="session")
def filled_stores(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both peers' data directories with ``FILLED_EVENTS`` events, built once; copy them with ``copy_filled``."""
    root = tmp_path_factory.mktemp("filled")

    async def build() -> None:
        async with open_peers(root) as peers:
            await fill(peers, FILLED_EVENTS)

    run_coroutine(build())
    return root


@pytest.fixture
def copy_filled(filled_stores: Path) -> Callable[[Path], Path]:
    """``copy_filled(tmp_path)``: a private copy of the filled stores (tests may append to it)."""

    def copy(destination: Path) -> Path:
        for name in PEER_NAMES:
            shutil.copytree(filled_stores / name, destination / name)
        return destination

    return copy
