"""The ``lighthouse`` command: inspect, repair and dump data directories, benchmark, serve.

Exit codes of ``verify``: 0 intact, 1 damage found, 2 usage or I/O error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from lighthouse.errors import LighthouseError
from lighthouse.maintenance import DirectoryReport, dump_events, repair_directory, verify_directory

__all__ = ["main"]


def _print_report(report: DirectoryReport, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
        return
    print(f"{report.path}: {'intact' if report.intact else 'DAMAGED'}")
    print(f"  segments {report.segments}, frames {report.frames}, events {report.events}, bytes {report.bytes}")
    print(f"  sequences {report.first_sequence}..{report.last_sequence}")
    for damage in report.damage:
        lost = (
            f", lost sequences {damage.lost_first}..{damage.lost_last}"
            if damage.lost_first is not None and damage.lost_last is not None
            else ""
        )
        print(f"  {damage.kind}: {damage.segment} bytes {damage.start}..{damage.end}{lost}")
    for first, last in report.voided:
        print(f"  voided sequences {first}..{last} (never held events)")


def _cmd_verify(args: argparse.Namespace) -> int:
    report = verify_directory(args.dir)
    _print_report(report, as_json=args.json)
    return 0 if report.intact else 1


def _cmd_info(args: argparse.Namespace) -> int:
    _print_report(verify_directory(args.dir), as_json=args.json)
    return 0


def _cmd_repair(args: argparse.Namespace) -> int:
    before = repair_directory(args.dir)
    after = verify_directory(args.dir)
    if args.json:
        print(json.dumps({"before": before.to_dict(), "after": after.to_dict()}, indent=2))
    else:
        print(f"repaired {args.dir}: {len(before.damage)} damaged range(s) removed, originals in quarantine/")
        _print_report(after, as_json=False)
    return 0 if after.intact else 1


def _cmd_dump(args: argparse.Namespace) -> int:
    out = sys.stdout
    for event in dump_events(args.dir, from_sequence=args.from_sequence, limit=args.limit):
        out.write(json.dumps(event.to_dict(), default=repr) + "\n")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from lighthouse.bench import run_bench

    return run_bench(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lighthouse", description="lighthouse event store tools")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func, text in (
        ("verify", _cmd_verify, "check every frame; exit 1 if damage is found"),
        ("info", _cmd_info, "summarise a data directory"),
        ("repair", _cmd_repair, "rewrite damaged segments without their damaged ranges"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("dir")
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.set_defaults(func=func)
    p = sub.add_parser("dump", help="print events as JSON lines")
    p.add_argument("dir")
    p.add_argument("--from", dest="from_sequence", type=int, default=1)
    p.add_argument("--limit", type=int, default=None)
    p.set_defaults(func=_cmd_dump)
    from lighthouse.bench import add_bench_arguments

    p = sub.add_parser("bench", help="benchmark this machine: lighthouse vs sqlite3 on the same workload")
    add_bench_arguments(p)
    p.set_defaults(func=_cmd_bench)

    from lighthouse.bench_scale import add_scale_arguments, run_scale

    p = sub.add_parser("bench-scale", help="open time, memory, replay and queries at 1M and 10M events")
    add_scale_arguments(p)
    p.set_defaults(func=run_scale)
    try:
        from lighthouse.cli_serve import add_serve_parser, add_token_parser
    except ImportError:  # the server extras are optional for offline tools
        pass
    else:
        add_serve_parser(sub)
        add_token_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return 2 if exc.code not in (0, None) else 0
    try:
        return int(args.func(args))
    except (OSError, LighthouseError) as exc:
        print(f"lighthouse {args.command}: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
