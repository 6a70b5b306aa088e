"""The rules an adapter must keep before any fault is worth injecting, each with the name a failure reports."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["RULES", "RuleViolation"]

#: Rule name -> what it demands. A failing run names one of these.
RULES: Mapping[str, str] = MappingProxyType({
    "open": "the factory builds an adapter for an empty data directory and open() succeeds",
    "append": "append(event) returns the stored event: same event_id, event_type, aggregate_id and data",
    "append_batch": "append_batch(events) returns one stored event per event, in order, with the same content",
    "gapless_sequences": "sequences start at 1 or above and each acknowledged event gets the previous one + 1",
    "batch_all_or_nothing": "a batch holding one invalid event is refused with AdapterError and stores none of it",
    "typed_errors": "bad input raises AdapterError with code 'invalid_event' (not retryable), never another "
                    "exception, and stores nothing",
    "idempotent_retry": "resending a stored event (or batch) with the same event_id and content stores no second "
                        "copy: it returns the stored sequence or raises AdapterError 'duplicate_event'; reusing an "
                        "event_id for other content raises 'duplicate_event'",
    "read_all": "read_all() yields exactly the acknowledged events, in sequence order, with their content",
    "query": "query(event_types, aggregate_ids, limit) returns the matching events in sequence order, at most limit",
    "durable_reopen": "after close() and a new adapter opened on the same data directory, read_all() is unchanged",
})


class RuleViolation(AssertionError):
    """One rule broken; ``rule`` is a key of :data:`RULES`."""

    def __init__(self, rule: str, message: str) -> None:
        if rule not in RULES:
            raise ValueError(f"unknown conformance rule {rule!r}")
        super().__init__(f"[{rule}] {message}")
        self.rule = rule
        self.message = message
