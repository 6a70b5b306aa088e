"""The ``testkit`` command: compare runs against baselines, pool runs into baselines, render reports.

Exit codes are part of the interface, for CI: 0 when nothing blocks (ok, warn, improved, insufficient data,
inconclusive within the fail threshold), 1 when a metric regressed beyond its fail threshold and the statistics
say it is real, 2 for a usage error or a file that is unreadable or does not follow the results schema, 3 when a
change past the fail threshold sits inside the runs' noise (unresolved: neither a pass nor a regression).

Each subcommand is one ``(name, add_arguments, run)`` entry in :data:`SUBCOMMANDS`; add a command by adding
an entry. Commands whose code is heavy (``report`` pulls in pandas and matplotlib) import it inside ``run``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from testkit.conformance import command as _conformance
from testkit.gate import EXIT_UNRESOLVED
from testkit.regression import Baseline, Thresholds, compare, load_comparable
from testkit.results import ResultsSchemaError, load_results, write_json_atomically

__all__ = ["EXIT_OK", "EXIT_REGRESSION", "EXIT_UNRESOLVED", "EXIT_USAGE", "SUBCOMMANDS", "main"]

EXIT_OK = 0
EXIT_REGRESSION = 1
EXIT_USAGE = 2

_Run = Callable[[argparse.Namespace], int]


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected a fraction such as 0.05, got {text!r}") from error
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive fraction, got {text!r}")
    return value


def _metric_threshold(text: str) -> tuple[str, Thresholds]:
    pattern, _, limits = text.rpartition("=")
    warn, _, fail = limits.partition(":")
    try:
        return pattern, Thresholds(_fraction(warn), _fraction(fail))
    except (argparse.ArgumentTypeError, ValueError) as error:
        raise argparse.ArgumentTypeError(f"expected PATTERN=WARN:FAIL such as '*p99*=0.1:0.3', got {text!r} "
                                         f"({error})") from error


# ------------------------------------------------------------------------------------------------------ compare


def _add_compare(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("base", type=Path, help="baseline file or results file to compare against")
    parser.add_argument("new", type=Path, help="results file (or baseline file) of the run under judgement")
    parser.add_argument("--html", type=Path, metavar="OUT", help="also write a self-contained HTML table")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the comparison as JSON")
    parser.add_argument("--warn", type=_fraction, default=0.05, help="relative change to warn about (default 0.05)")
    parser.add_argument("--fail", type=_fraction, default=0.15, help="relative change that blocks (default 0.15)")
    parser.add_argument("--alpha", type=_fraction, default=0.01,
                        help="significance level of the statistical test (default 0.01)")
    parser.add_argument("--threshold", type=_metric_threshold, action="append", default=[],
                        metavar="PATTERN=WARN:FAIL",
                        help="per-metric thresholds; PATTERN globs a metric key or name; repeatable, first match wins")


def _run_compare(args: argparse.Namespace) -> int:
    if args.warn > args.fail:
        raise _UsageError(f"--warn ({args.warn}) must not exceed --fail ({args.fail})")
    if args.alpha >= 1:
        raise _UsageError(f"--alpha must be below 1, got {args.alpha}")
    comparison = compare(load_comparable(args.base), load_comparable(args.new), warn=args.warn, fail=args.fail,
                         per_metric_thresholds=dict(args.threshold), alpha=args.alpha)
    print(comparison.format_table())
    if args.html is not None:
        args.html.parent.mkdir(parents=True, exist_ok=True)
        args.html.write_text(comparison.to_html(), encoding="utf-8")
        print(f"HTML table written to {args.html}")
    if args.json is not None:
        write_json_atomically(comparison.to_dict(), args.json)
        print(f"JSON comparison written to {args.json}")
    if not comparison.rows:
        print(f"testkit compare: error: no metric in common ({len(comparison.only_in_baseline)} only in the "
              f"baseline, {len(comparison.only_in_current)} only in the new run): nothing was compared",
              file=sys.stderr)
        return EXIT_USAGE
    if comparison.blocking:
        names = ", ".join(f"{row.metric} [{row.statistic}]" for row in comparison.regressions)
        print(f"BLOCKING: {len(comparison.regressions)} regression(s): {names}")
        return EXIT_REGRESSION
    if comparison.unresolved:
        names = ", ".join(f"{row.metric} [{row.statistic}] {row.delta_relative:+.1%} (noise ±{row.noise_band or 0:.1%})"
                          for row in comparison.unresolved)
        print(f"UNRESOLVED: {len(comparison.unresolved)} change(s) worse than the fail threshold but inside the "
              f"runs' noise: {names}; rerun with more (or steadier) baseline and new runs")
        return EXIT_UNRESOLVED
    return EXIT_OK


# ----------------------------------------------------------------------------------------------------- baseline


def _add_baseline(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", type=Path,
                        help="baseline file to write, or a directory: then <directory>/<machine fingerprint>.json")
    parser.add_argument("results", type=Path, nargs="+",
                        help="results files of repeated runs on one kind of machine (3+ give a noise floor)")


def _run_baseline(args: argparse.Namespace) -> int:
    baseline = Baseline.from_results(*(load_results(path) for path in args.results))
    if args.out.is_dir():
        args.out = args.out / f"{baseline.fingerprint.key}.json"
    baseline.save(args.out)
    print(f"baseline of {len(baseline.metrics)} metric(s) from {baseline.source_runs} run(s) "
          f"for machine {baseline.fingerprint.key} written to {args.out}")
    return EXIT_OK


# ------------------------------------------------------------------------------------------------------- report


def _add_report(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", type=Path, nargs="+", help="results files to render")
    parser.add_argument("-o", "--out", type=Path, default=Path("reports/report.html"), help="HTML file to write")


def _run_report(args: argparse.Namespace) -> int:
    try:
        from testkit.report import render_report
    except ImportError as error:
        print(f"testkit report: error: the HTML report renderer testkit.report.render_report is not available "
              f"({error}); install testkit with its report dependencies, or use `testkit compare --html` "
              "for a comparison table", file=sys.stderr)
        return EXIT_USAGE
    written = render_report(list(args.results), args.out)  # paths: each run is labelled by its file
    print(f"report written to {written}")
    return EXIT_OK


def _add_chaos(parser: argparse.ArgumentParser) -> None:
    from testkit.chaos.command import add_arguments

    add_arguments(parser)


def _run_chaos(args: argparse.Namespace) -> int:
    from testkit.chaos.command import run

    return run(args)


#: ``(name, help, add_arguments, run)`` for each subcommand.
SUBCOMMANDS: tuple[tuple[str, str, Callable[[argparse.ArgumentParser], None], _Run], ...] = (
    ("compare", "compare a run with a baseline; exit 1 on a blocking regression", _add_compare, _run_compare),
    ("baseline", "pool results files of repeated runs into a baseline file", _add_baseline, _run_baseline),
    ("report", "render results files as a self-contained HTML report", _add_report, _run_report),
    ("chaos", "run the shipped chaos suite against one adapter (conformance first)", _add_chaos, _run_chaos),
    ("conformance", "check that an adapter keeps the protocol's rules (run it before any chaos)",
     _conformance.add_arguments, _conformance.run),
)


class _UsageError(Exception):
    """Arguments that parse but make no sense together."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="testkit", description="lighthouse-testkit command line")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text, add_arguments, run in SUBCOMMANDS:
        subparser = commands.add_parser(name, help=help_text, description=help_text)
        add_arguments(subparser)
        subparser.set_defaults(run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except _UsageError as error:
        parser.error(str(error))
    except (ResultsSchemaError, ValueError) as error:
        print(f"testkit {args.command}: error: {error}", file=sys.stderr)
    except OSError as error:
        print(f"testkit {args.command}: error: {error}", file=sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
