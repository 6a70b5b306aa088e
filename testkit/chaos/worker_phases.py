"""Judging a worker that ran in phases (before / under a fault / after): typed errors, resume, recovered log."""

from __future__ import annotations

from typing import Any

from testkit.chaos.judging import recover_and_judge
from testkit.chaos.result import CampaignResult
from testkit.checkers.voids import check_voids_required
from testkit.faults.workload import WorkloadSpec, load_history

__all__ = ["judge_phased_worker"]


def judge_phased_worker(result: CampaignResult, spec: WorkloadSpec, worker: dict[str, Any], *,
                        resume_acks: int, what: str, require_voids: bool = False) -> None:
    """Every refusal typed, at least ``resume_acks`` acknowledged in the last phase, and the log judged.

    ``require_voids``: a refused write's sequence numbers (when the store named them) must be reported as
    voided once a later write succeeded, and never reused (:mod:`testkit.checkers.voids`)."""
    phases = worker["phases"]
    untyped = {k: v for phase in phases for k, v in phase["untyped"].items()}
    result.tally.violated("typed_errors", 1 if untyped else 0)
    if untyped:
        examples = [e for phase in phases for e in phase["untyped_examples"]][:3]
        result.failures.append(f"untyped errors {untyped}: {examples}")
    after = phases[-1]
    result.tally.violated("recovers", 0 if after["ok"] >= resume_acks else 1)
    if after["ok"] < resume_acks:
        result.failures.append(f"writes did not resume after {what}: {after}")
    judgement, recovered, damage = recover_and_judge(spec.adapter, spec.data_dir, spec.journal_dir)
    result.timeline.cycle(judgement, recovered, spec.journal_dir)
    result.tally.add(judgement)
    result.last = judgement
    if damage:
        result.problem(f"the log is damaged after {what}: {damage[:3]}", "recovers")
    if require_voids:
        unvoided = check_voids_required(load_history(spec.journal_dir), recovered.voided_ranges(), recovered.events)
        result.tally.violated("prefix_no_holes", len(unvoided))
        result.failures.extend(unvoided)
    if not judgement.ok:
        result.failures.append(judgement.describe())
