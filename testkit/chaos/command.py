"""``testkit chaos --adapter PKG.MODULE:FACTORY``: conformance first, then the whole shipped chaos suite.

The same as ``python -m pytest --pyargs testkit.chaos.suite --testkit-adapter ...`` (run in this
process, so the current directory is importable, as with ``python -m``), preceded by the adapter
conformance suite when it is installed (:mod:`testkit.conformance`): a broken adapter gets a message
naming the broken rule instead of a checker verdict three layers down. Exit code: pytest's (0 all
passed, 1 a campaign failed), or 3 when conformance failed and no fault was injected.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import os
import sys
from pathlib import Path

from testkit.chaos.registry import system_from_arguments

__all__ = ["EXIT_NOT_CONFORMANT", "add_arguments", "pytest_arguments", "run"]

EXIT_NOT_CONFORMANT = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--adapter", required=True, metavar="PKG.MODULE:FACTORY",
                        help="the adapter factory: a callable (data_dir, **options) -> EventStoreAdapter")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="factory option (repeatable); expected_loss=FAULT[,FAULT] declares a known-unsafe "
                             "configuration that must be caught")
    parser.add_argument("--report", type=Path, metavar="DIR", help="write index.html and results.json here")
    parser.add_argument("--results", type=Path, metavar="DIR", help="write results.json here")
    parser.add_argument("--seed", type=int, help="seed of the whole run (printed; replays the run)")
    parser.add_argument("--duration", help="scale every campaign to this duration (30s, 10m, 1h)")
    parser.add_argument("-k", dest="select", metavar="EXPR", help="only campaigns matching this pytest -k expression")
    parser.add_argument("--skip-conformance", action="store_true", help="do not run the conformance suite first")


def pytest_arguments(args: argparse.Namespace) -> list[str]:
    """The pytest command line equivalent to ``args``."""
    argv = ["--pyargs", "testkit.chaos.suite", "-p", "no:cacheprovider", "-ra", "--testkit-adapter", args.adapter,
            "-W", "ignore::pytest.PytestAssertRewriteWarning"]
    for pair in args.option:
        argv += ["--testkit-option", pair]
    for flag, value in (("--testkit-report", args.report), ("--testkit-results", args.results),
                        ("--testkit-seed", args.seed), ("--testkit-duration", args.duration), ("-k", args.select)):
        if value is not None:
            argv += [flag, str(value)]
    return argv


def _conformant(args: argparse.Namespace) -> bool:
    if args.skip_conformance or importlib.util.find_spec("testkit.conformance") is None:
        return True
    from testkit.conformance import run_conformance  # type: ignore[import-not-found,unused-ignore]

    system = system_from_arguments(args.adapter, args.option)
    factory = functools.partial(system.spec.create)
    report = run_conformance(factory, seed=args.seed or 0, name=system.name)
    print(report.describe())
    return bool(report.passed)


def run(args: argparse.Namespace) -> int:
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: the adapter module may sit in this folder
    system_from_arguments(args.adapter, args.option)  # a bad reference or option fails here, clearly
    if not _conformant(args):
        print("testkit chaos: the adapter breaks the conformance rules above; fix them before injecting faults",
              file=sys.stderr)
        return EXIT_NOT_CONFORMANT
    import pytest

    return int(pytest.main(pytest_arguments(args)))
