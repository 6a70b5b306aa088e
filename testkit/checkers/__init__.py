"""Operation histories and the linear-time durability checker (Jepsen-style invoke/ok/fail/unknown).

Quick start::

    from testkit.checkers import History, check_durability

    with History(journal=tmp_path / "client.jsonl") as history:
        for event in events:
            await history.append(adapter, event)   # records invoke, then ok / fail / unknown
    recovered = [e async for e in adapter.read_all()]
    verdict = check_durability(History.load(tmp_path / "client.jsonl"), recovered)
    assert verdict.ok, verdict.summary()
"""

from testkit.checkers.durability import check_durability
from testkit.checkers.history import (
    DEFINITE_FAILURE_CODES,
    Call,
    History,
    HistoryColumns,
    HistoryWriter,
    JournalError,
    Operation,
    OpKind,
    OpStatus,
    is_definite_failure,
)
from testkit.checkers.verdict import Verdict, VerdictBuilder, Violation, ViolationKind

__all__ = [
    "DEFINITE_FAILURE_CODES",
    "Call",
    "History",
    "HistoryColumns",
    "HistoryWriter",
    "JournalError",
    "OpKind",
    "OpStatus",
    "Operation",
    "Verdict",
    "VerdictBuilder",
    "Violation",
    "ViolationKind",
    "check_durability",
    "is_definite_failure",
]
