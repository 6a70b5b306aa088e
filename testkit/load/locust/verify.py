"""After a distributed run: every acknowledged write must be in the store, found by its id.

Workers journal each request (``testkit.checkers.History``) next to their results; this reads every
journal in the run's directory (copy them there from the worker machines), reads the whole store back
through the kit's HTTP adapter, runs the durability checker and adds its verdict to ``results.json``.

    python -m testkit.load.locust.verify --out DIR --host http://127.0.0.1:8080 --token-file TOKEN
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from testkit.adapters.base import StoredEvent
from testkit.adapters.http import HttpEventStoreAdapter
from testkit.checkers import History, Verdict, check_durability
from testkit.load.locust.run_results import results_path
from testkit.results import RunResults, VerdictRecord

__all__ = ["JOURNAL_GLOB", "for_the_check", "journals_in", "main", "record_verdict", "verify_run"]

JOURNAL_GLOB = "history-*.journal"
_NO_DATA: Final[Mapping[str, Any]] = MappingProxyType({})


def journals_in(out_dir: str | Path) -> list[Path]:
    return sorted(Path(out_dir).glob(JOURNAL_GLOB))


async def verify_run(out_dir: str | Path, base_url: str, token: str, *,
                     store_generated: Callable[[Any], bool] | None = None) -> Verdict:
    """The durability verdict of the run whose journals are in ``out_dir`` against the store at ``base_url``.

    ``store_generated`` is asked about events as ``for_the_check`` keeps them (ids, type, aggregate,
    author, sequence and version; no payload)."""
    journals = journals_in(out_dir)
    if not journals:
        raise FileNotFoundError(f"no {JOURNAL_GLOB} in {out_dir}: was the run started with --testkit-out there?")
    history = History.load(*journals)
    adapter = HttpEventStoreAdapter(base_url, token=token, timeout_s=60.0)
    await adapter.open()
    try:
        recovered = [for_the_check(event) async for event in adapter.read_all()]
    finally:
        await adapter.close()
    return check_durability(history, recovered, store_generated=store_generated, verify_digests=False)


def for_the_check(event: StoredEvent) -> StoredEvent:
    """What the check by id reads of a recovered event: no payload (its digest is not checked here, the
    journals do not keep one) and one shared copy of each repeated name. Kept whole, a read-back of 3.6
    million soak events held 5.3 GB, and an hour at 10,000 events/s would not fit in this machine's memory."""
    return StoredEvent(event.event_id, event.sequence, sys.intern(event.event_type), sys.intern(event.aggregate_id),
                       sys.intern(event.source_agent), _NO_DATA, aggregate_version=event.aggregate_version)


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
