"""``testkit conformance --adapter PKG.MODULE:FACTORY [--option key=value]...``: exit 0 pass, 1 a rule broke."""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

from testkit.chaos.registry import system_from_arguments

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--adapter", required=True, metavar="PKG.MODULE:FACTORY",
                        help="callable building the adapter from a data directory (and the options), "
                             "or a registered name (postgres, lmdb, sqlite-off...)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="keyword argument for the factory (Python or JSON literal, else text); repeatable")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed: the same seed replays the run")
    parser.add_argument("--max-examples", type=int, default=50, help="random programs to run (default 50)")
    parser.add_argument("--steps", type=int, default=12, help="calls per program at most (default 12)")
    parser.add_argument("--workdir", type=Path, help="where the examples' data directories go (default: temp)")
    parser.add_argument("--no-shrink", action="store_true", help="report the first failing program unshrunk")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the report as JSON")


def run(args: argparse.Namespace) -> int:
    from testkit.conformance.runner import run_conformance  # hypothesis is imported only for this command

    system = system_from_arguments(args.adapter, args.option)  # a ValueError here is a usage error (exit 2)
    report = run_conformance(functools.partial(system.spec.create), seed=args.seed, max_examples=args.max_examples,
                             steps=args.steps, workdir=args.workdir, shrink=not args.no_shrink)
    print(report.describe())
    if args.json is not None:
        args.json.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return 0 if report.passed else 1
