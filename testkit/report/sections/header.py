"""The top of the page: what ran, when, on which machine, with which seed, how to rerun it, and the verdict."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from testkit.report.formatting import format_duration_s, format_quantity, tone_of
from testkit.report.html import code, escape, key_values
from testkit.report.inputs import ReportInput, RunView
from testkit.report.reproduce import reproduce_command

__all__ = ["overall_verdict", "render_header"]

_FAILING = ("failed", "error", "interrupted")


def overall_verdict(data: ReportInput) -> str:
    """The worst run verdict; when no run was judged, what the test outcomes say."""
    verdicts = [str(run.run.get("verdict", "unknown")) for run in data.runs]
    for worst in _FAILING:
        if worst in verdicts:
            return worst
    if verdicts and all(v == "passed" for v in verdicts):
        return "passed"
    outcomes = Counter(t.test["outcome"] for t in data.tests())
    if outcomes["failed"] or outcomes["error"]:
        return "failed"
    return "passed" if outcomes else "unknown"


def render_header(data: ReportInput, title: str) -> str:
    verdict = overall_verdict(data)
    suites = Counter(_suite_of(t.nodeid) for t in data.tests())
    primary = data.primary_sut
    peers = sorted({str(t.test["sut"]) for t in data.tests() if t.test.get("sut")} - {primary})
    started = [_parse(run.run.get("started")) for run in data.runs]
    finished = [_parse(run.run.get("finished")) for run in data.runs]
    begin = min((s for s in started if s), default=None)
    end = max((f for f in finished if f), default=None)
    what = f"{data.test_count:,} test{'s' if data.test_count != 1 else ''}"
    if suites:
        what += " in " + ", ".join(f"{name} ({count:,})" for name, count in suites.most_common(6))
    if primary:
        what += f" · system under test {primary}" + (f" vs {', '.join(peers)}" if peers else "")
    when = ""
    if begin:
        when = f"started {begin.strftime('%Y-%m-%d %H:%M:%S %Z').strip()}"
        if end:
            when += f", took {format_duration_s((end - begin).total_seconds())}"
    facts: list[tuple[str, str]] = []
    for run in data.runs:
        prefix = f"{run.label}: " if len(data.runs) > 1 else ""
        rerun = run.run.get("rerun") or run.document.get("rerun")
        command = rerun if isinstance(rerun, str) else reproduce_command(run.run.get("command") or [],
                                                                          run.run.get("seed"))
        facts.append((f"{prefix}reproduce", code(command)))
        facts.append((f"{prefix}seed", escape(run.run.get("seed", "—"))))
    for machine, runs in _machines(data.runs).items():
        label = "machine" if len(data.runs) == 1 else f"machine ({', '.join(runs)})"
        facts.append((label, machine))
    return (
        '<header class="top">'
        f'<h1>{escape(title)} <span class="verdict {tone_of(verdict)}">{escape(verdict)}</span></h1>'
        f'<p class="sub">{escape(what)}</p>'
        + (f'<p class="sub">{escape(when)}</p>' if when else "")
        + key_values(facts, raw=True)
        + "</header>"
    )


def _machines(runs: Sequence[RunView]) -> dict[str, list[str]]:
    """Each distinct machine described once, with the runs that ran on it."""
    machines: dict[str, list[str]] = {}
    for run in runs:
        machines.setdefault(_describe_machine(run.environment, run.run.get("fingerprint")), []).append(run.label)
    return machines


def _describe_machine(environment: Mapping[str, Any], fingerprint: Any) -> str:
    parts = [
        environment.get("cpu_model"),
        f"{environment['logical_cores']} cores" if environment.get("logical_cores") else None,
        format_quantity(environment["memory_bytes"], "bytes") + " RAM" if environment.get("memory_bytes") else None,
        " ".join(str(p) for p in (environment.get("os"), environment.get("kernel")) if p) or None,
        f"Python {environment['python_version']}" if environment.get("python_version") else None,
        f"{environment['filesystem']} at {environment.get('filesystem_path', '?')}"
        if environment.get("filesystem") else None,
        f"host {environment['hostname']}" if environment.get("hostname") else None,
    ]
    text = escape(" · ".join(str(p) for p in parts if p))
    return f"{text} · fingerprint {code(str(fingerprint or environment.get('key', '?')))}"


def _suite_of(nodeid: str) -> str:
    path = nodeid.split("::", 1)[0]
    parts = path.split("/")
    return "/".join(parts[:2]) if len(parts) > 2 else path


def _parse(stamp: Any) -> datetime | None:
    if not isinstance(stamp, str):
        return None
    try:
        return datetime.fromisoformat(stamp)
    except ValueError:
        return None
