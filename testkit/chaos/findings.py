"""``python -m testkit.chaos.findings`` (``make findings``): run the power-cut and SIGKILL campaigns over every shipped configuration
and write ``docs/findings.md`` (generated: seed, command and counts; rerun, never edit).

Each configuration's documented durability contract is its expectation (``expected_loss`` on the adapter):
a loss under a fault the contract allows is "known unsafe: caught"; any other loss is a violation.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import random
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from testkit.adapters import AdapterSpec
from testkit.adapters.shipped import SHIPPED
from testkit.chaos.crashes import run_kill_cycles, run_power_cuts
from testkit.chaos.finding import OTHER_KINDS, WRONG_READ_KINDS, Finding, open_seconds, percentile_50
from testkit.chaos.result import CampaignResult
from testkit.chaos.sut import SystemUnderTest
from testkit.faults.probe import probe_shutdown_ioctl

__all__ = ["main", "render", "run_findings"]

#: Fault moments after the worker opened: a fresh third-party worker needs tens of ms to its first ack.
CUT_DELAY_S = (0.05, 0.4)
KILL_DELAY_S = (0.02, 0.3)
REFERENCE = {"lighthouse": "testkit.adapters.lighthouse:LighthouseAdapter"}


def _campaigns(cuts: int, kills: int) -> dict[str, Callable[[AdapterSpec, Path, random.Random, int], CampaignResult]]:
    return {
        "power_cut": lambda spec, root, rng, seed: run_power_cuts(spec, cuts, root, rng, seed, size_mb=128,
                                                                  cut_delay_s=CUT_DELAY_S),
        "sigkill": lambda spec, root, rng, seed: run_kill_cycles(spec, kills, root, rng, seed,
                                                                 kill_delay_s=KILL_DELAY_S),
    }


def _finding(name: str, fault: str, expected: bool, result: CampaignResult, root: Path, seconds: float) -> Finding:
    verdict = result.last.verdict if result.last is not None else None
    counts = dict(verdict.violation_counts) if verdict is not None else {}
    opens = open_seconds(root)
    return Finding(
        configuration=name, fault=fault, expected_loss=expected, cases=result.tally.cases,
        proven=result.tally.proven,
        acknowledged=int(verdict.counts.get("acknowledged", 0)) if verdict is not None else 0,
        lost_acked=len(result.lost_ids), checks=len(result.caught), checks_with_new_loss=result.catches,
        duplicates=int(counts.get("duplicate", 0)), wrong_reads=sum(int(counts.get(k, 0)) for k in WRONG_READ_KINDS),
        other_violations=sum(int(counts.get(k, 0)) for k in OTHER_KINDS),
        damage_detected=int(result.tally.violations.get("recovers", 0)),
        recovery_p50_s=percentile_50(opens), recovery_max_s=max(opens) if opens else None, seconds=seconds,
    )


def run_findings(names: Sequence[str], faults: Sequence[str], cuts: int, kills: int, seed: int,
                 log: Callable[[str], None]) -> list[Finding]:
    campaigns = _campaigns(cuts, kills)
    factories = {**REFERENCE, **{n: s.factory for n, s in SHIPPED.items()}}
    findings = []
    for name in names:
        shipped = SHIPPED.get(name)
        if shipped is not None and shipped.missing():
            log(f"{name}: skipped, {shipped.missing()}")
            continue
        system = SystemUnderTest.from_reference(factories[name], name=name)  # its contract: expected_loss
        spec = system.spec
        expected_loss = {fault for fault in faults if system.expects_loss(fault)}
        for fault in faults:
            rng = random.Random(f"{seed}:{name}:{fault}")
            started = time.monotonic()
            with tempfile.TemporaryDirectory(prefix=f"findings-{name}-{fault}-") as work:
                root = Path(work)
                try:
                    result = campaigns[fault](spec, root, rng, rng.getrandbits(62))
                    finding = _finding(name, fault, fault in expected_loss, result, root, time.monotonic() - started)
                except Exception as exc:  # a store that cannot even be recovered is a finding, not a crash
                    finding = Finding(name, fault, fault in expected_loss, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, None,
                                      None, time.monotonic() - started, error=f"{type(exc).__name__}: {str(exc)[:200]}")
            log(f"{name:22} {fault:9} {finding.verdict} ({finding.cases} cases, {finding.lost_acked} acked lost, "
                f"{finding.seconds:.0f} s)")
            findings.append(finding)
    return findings


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def render(findings: Sequence[Finding], *, seed: int, command: str, started: datetime.datetime,
           seconds: float, skipped: Sequence[str]) -> str:
    lines = [
        "# Findings: acknowledged writes under power cuts and SIGKILL",
        "",
        "<!-- generated by `make findings` (python -m testkit.chaos.findings); do not edit: rerun it -->",
        "",
        f"- command: `{command}`",
        f"- seed: {seed} (replays the same generated traffic and the same fault delays; how many writes are "
        "acknowledged before a fault, and so the counts, vary with the machine's speed)",
        f"- generated: {started.isoformat(timespec='seconds')} in {seconds:.0f} s on {platform.node() or 'unknown'} "
        f"({platform.system()} {platform.release()}, {os.cpu_count()} CPUs, Python {platform.python_version()})",
        "- power cut: the data directory lives on a loop-mounted ext4 that is shut down with `FS_IOC_SHUTDOWN` "
        "(no journal flush) under a frozen worker, then remounted: only what reached the disk survives",
        "- SIGKILL: the worker (and, for PostgreSQL, its server, which dies with it) is killed at a random moment,"
        " 10% of them during recovery",
        "- expectation: each store's documented durability contract (`expected_loss` of its adapter)",
        "",
        "| configuration | fault | contract allows loss | faults (proven) | acked events | acked lost "
        "| checks finding new loss | duplicates | wrong reads | other violations | damage detected "
        "| recovery p50 / max (s) | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for f in findings:
        lines.append(
            f"| {f.configuration} | {f.fault} | {'yes' if f.expected_loss else 'no'} | {f.cases} ({f.proven}) "
            f"| {f.acknowledged} | {f.lost_acked} | {f.checks_with_new_loss} of {f.checks} | {f.duplicates} "
            f"| {f.wrong_reads} "
            f"| {f.other_violations} | {f.damage_detected} | {_seconds(f.recovery_p50_s)} / {_seconds(f.recovery_max_s)} "
            f"| {f.verdict} |")
    unsafe = [f for f in findings if f.expected_loss]
    lines += ["", "## Known unsafe configurations", ""]
    lines += [f"- {f.configuration} under {f.fault}: {f.verdict} ({f.cases} faults, {f.proven} proven; "
              f"{f.checks_with_new_loss} of {f.checks} checks found newly lost acknowledged events; "
              f"{f.lost_acked} acknowledged events lost)" for f in unsafe] or ["- none run"]
    if skipped:
        lines += ["", "## Not run", "", *(f"- {s}" for s in skipped)]
    lines += [
        "", "## Columns", "",
        "- *acked events*: events the store acknowledged over the whole campaign (the checker's history)",
        "- *acked lost*: acknowledged events missing from the recovered log at any check",
        "- *checks finding new loss*: recover-and-judge checks (after every power cut; after every 10th SIGKILL) "
        "that found an acknowledged event missing that the previous checks had not",
        f"- *wrong reads*: events read back different from what was acknowledged ({', '.join(WRONG_READ_KINDS)})",
        f"- *other violations*: {', '.join(OTHER_KINDS)}",
        "- *damage detected*: recoveries that failed or reported damage (the store noticed something)",
        "- *recovery*: time for a fresh worker to open the store after the previous fault (includes crash recovery)",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testkit.chaos.findings", description=__doc__)
    parser.add_argument("--seed", type=int, default=20261202)
    parser.add_argument("--cuts", type=int, default=8, help="power cuts per configuration")
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs per configuration")
    parser.add_argument("--only", nargs="*", default=None, help="configurations to run (default: all shipped)")
    parser.add_argument("--faults", nargs="*", default=["power_cut", "sigkill"], choices=["power_cut", "sigkill"])
    parser.add_argument("--out", type=Path, default=Path("docs/findings.md"))
    args = parser.parse_args(argv)
    names = list(args.only) if args.only else ["lighthouse", *SHIPPED]
    unknown = [n for n in names if n not in SHIPPED and n not in REFERENCE]
    if unknown:
        parser.error(f"unknown configurations {unknown}; known: {['lighthouse', *SHIPPED]}")
    faults = list(args.faults)
    skipped = []
    if "power_cut" in faults and not probe_shutdown_ioctl():
        skipped.append(f"power_cut: {probe_shutdown_ioctl().reason}")
        faults.remove("power_cut")
    started, clock = datetime.datetime.now(datetime.UTC), time.monotonic()
    findings = run_findings(names, faults, args.cuts, args.kills, args.seed, lambda m: print(m, flush=True))
    skipped += [f"{n}: {SHIPPED[n].missing()}" for n in names if n in SHIPPED and SHIPPED[n].missing()]
    command = "python -m testkit.chaos.findings " + shlex.join(sys.argv[1:] if argv is None else list(argv))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(findings, seed=args.seed, command=command.strip(), started=started,
                               seconds=time.monotonic() - clock, skipped=skipped))
    print(f"findings written to {args.out}")
    return 0 if all(f.verdict in ("clean", "known unsafe: caught") for f in findings) else 1


if __name__ == "__main__":
    sys.exit(main())
