"""After a distributed run: every acknowledged write must be in the store, found by its id.

Workers journal each request (``testkit.checkers.HistoryWriter``) next to their results; this reads every
journal in the run's directory (copy them there from the worker machines), reads the whole store back
through the kit's HTTP adapter, runs the durability checker and adds its verdict to ``results.json``.

    python -m testkit.load.locust.verify --out DIR --host http://127.0.0.1:8080 --token-file TOKEN
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final

from testkit.adapters.base import StoredEvent
from testkit.adapters.http import HttpEventStoreAdapter
from testkit.checkers import History, Verdict, check_durability
from testkit.load.locust.run_results import results_path
from testkit.results import RunResults, VerdictRecord

__all__ = ["JOURNAL_GLOB", "journals_in", "main", "record_verdict", "verify_run"]

JOURNAL_GLOB = "history-*.journal"
#: events handed to the check at a time, and how long one read of the store may take
_PAGE: Final[int] = 10_000
_PAGE_TIMEOUT_S: Final[float] = 60.0


def journals_in(out_dir: str | Path) -> list[Path]:
    return sorted(Path(out_dir).glob(JOURNAL_GLOB))


async def verify_run(out_dir: str | Path, base_url: str, token: str, *,
                     store_generated: Callable[[Any], bool] | None = None) -> Verdict:
    """The durability verdict of the run whose journals are in ``out_dir`` against the store at ``base_url``.

    The check runs in a worker thread and reads the store a page at a time as it goes, so only the
    events' ids and sequences are held, not the events: an hour at 10,000 events/s is 36 million of them."""
    journals = journals_in(out_dir)
    if not journals:
        raise FileNotFoundError(f"no {JOURNAL_GLOB} in {out_dir}: was the run started with --testkit-out there?")
    history = History.load(*journals)
    adapter = HttpEventStoreAdapter(base_url, token=token, timeout_s=_PAGE_TIMEOUT_S)
    await adapter.open()
    try:
        events, loop = adapter.read_all(), asyncio.get_running_loop()

        def recovered() -> Iterator[StoredEvent]:
            while page := asyncio.run_coroutine_threadsafe(_take(events, _PAGE), loop).result(2 * _PAGE_TIMEOUT_S):
                yield from page

        return await asyncio.to_thread(check_durability, history, recovered(), store_generated=store_generated,
                                       verify_digests=False)
    finally:
        await adapter.close()


async def _take(events: AsyncIterator[StoredEvent], count: int) -> list[StoredEvent]:
    """Up to ``count`` more events (none: the store has no more).

    The check pauses the cyclic garbage collector (for the whole process) while it runs, and each HTTP
    exchange leaves a reference cycle that holds its page (up to 4 MiB): the youngest generation is
    collected here, or the pages read during the check would all stay in memory until it ends."""
    taken: list[StoredEvent] = []
    try:
        while len(taken) < count:
            taken.append(await anext(events))
    except StopAsyncIteration:
        pass
    gc.collect(0)
    return taken


def record_verdict(out_dir: str | Path, verdict: Verdict) -> RunResults:
    """Add the verdict to the run's ``results.json`` (its one test record) and fail the run if it is violated."""
    path = results_path(out_dir)
    results = RunResults.load(path)
    for test in results.tests:
        test.verdicts.append(VerdictRecord("durability (by id)", verdict.ok, dict(verdict.counts),
                                           [v.to_dict() for v in verdict.violations][:50]))
        if not verdict.ok:
            test.outcome = "failed"
    if not verdict.ok:
        results.finish("failed")
    results.save(path)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="the run's --testkit-out directory (with every worker's journal)")
    parser.add_argument("--host", required=True, help="base URL of the store")
    parser.add_argument("--token-file", required=True, help="a bearer token allowed to read every event")
    args = parser.parse_args(argv)
    verdict = asyncio.run(verify_run(args.out, args.host, Path(args.token_file).read_text().strip()))
    record_verdict(args.out, verdict)
    print(verdict.summary())
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
