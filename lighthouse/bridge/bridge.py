"""The ValidationBridge: decides agents' proposed commands and runs pair sessions, all as events.

Every step is appended to the store first and takes effect only when the bridge's projection folds
it back from the store's subscription, in log order. The live state is therefore, by construction,
what a replay of the log yields, and a restart rebuilds it from a snapshot plus the events after it.

Decisions: the policy approves safe proposals and rejects dangerous ones at once; proposals that
need review are escalated to an expert who must decide before a deadline. When the deadline passes
the bridge writes a timeout decision: rejection by default; approval only if configured, and only
for review-level proposals (a dangerous one is never approved without an expert). Deadlines are
judged by event time (``recorded_at``), so a replay agrees with what happened live.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from lighthouse.bridge.errors import BridgeConflict, BridgeForbidden, BridgeInvalid, BridgeNotFound
from lighthouse.bridge.policy import Policy, Risk, default_policy
from lighthouse.bridge.projection import BridgeProjection
from lighthouse.bridge.vocabulary import (
    BRIDGE_AGENT,
    DECISIONS,
    PAIR_CANCELLED,
    PAIR_COMPLETED,
    PAIR_EXPIRED,
    PAIR_MODES,
    REVIEW_DECISIONS,
    command_aggregate,
    pair_aggregate,
)
from lighthouse.errors import InvalidSnapshot, LighthouseError, SnapshotNotFound, StoreClosed, SubscriberOverflow
from lighthouse.models import Event, EventType
from lighthouse.store import EventStore

__all__ = ["BridgeSettings", "ValidationBridge"]

_log = logging.getLogger("lighthouse.bridge")
_MAX_TEXT: Final[int] = 64 * 1024
_MAX_ID: Final[int] = 128
#: What a decision's event type reports to the server's metrics (a decoded event holds the type's string).
_DECISIONS: Final[dict[str, str]] = {EventType.COMMAND_APPROVED: "approved", EventType.COMMAND_REJECTED: "rejected"}
_COMMAND_VIEW: Final[tuple[str, ...]] = (
    "command_id", "agent_id", "session_id", "tool", "tool_input", "risk", "rule", "expert_role", "status",
    "decision", "approver", "approval_method", "reason", "escalated_to", "deadline", "correlation_id",
)
_PAIR_VIEW: Final[tuple[str, ...]] = (
    "pair_id", "requester", "mode", "task", "invited", "partner", "state", "suggestions", "review_decision",
    "feedback", "deadline", "closed_by",
)


@dataclass(frozen=True, slots=True)
class BridgeSettings:
    """``timeout_action``: what an unanswered escalation becomes ("reject", or "approve" for review-level only)."""

    expert_timeout_seconds: float = 30.0
    timeout_action: str = "reject"
    pair_request_ttl_seconds: float = 300.0
    tick_seconds: float = 0.1
    snapshot_name: str = "validation-bridge"
    snapshot_every_events: int = 10_000
    # and at most one per this many seconds (0: no floor): each copies the whole state on the event loop (a
    # 2.2 MB state: 17 ms) and writes it on the I/O thread appends wait for; at 10,000 events/s, every second
    snapshot_min_interval_seconds: float = 30.0
    apply_timeout_seconds: float = 30.0
    max_wait_seconds: float = 60.0

    def __post_init__(self) -> None:
        if self.timeout_action not in ("reject", "approve"):
            raise ValueError("timeout_action must be 'reject' or 'approve'")
        for name in ("expert_timeout_seconds", "pair_request_ttl_seconds", "tick_seconds",
                     "apply_timeout_seconds", "max_wait_seconds"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a positive number")
        if self.snapshot_every_events < 0:
            raise ValueError("snapshot_every_events must be >= 0 (0: only at shutdown)")
        floor = self.snapshot_min_interval_seconds
        if isinstance(floor, bool) or not isinstance(floor, (int, float)) or not math.isfinite(floor) or floor < 0:
            raise ValueError("snapshot_min_interval_seconds must be a number >= 0")


class _KeyedLocks:
    """One lock per key (a command or pair id), dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


def _text(name: str, value: Any, *, limit: int = _MAX_TEXT, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > limit:
        raise BridgeInvalid(f"{name} must be a non-empty string of at most {limit} characters", field=name)
    return value


def _new_id() -> str:
    return str(uuid.uuid4())


class ValidationBridge:
    """Use ``await bridge.start()`` after opening the store and ``await bridge.stop()`` before closing it."""

    def __init__(
        self,
        store: EventStore,
        *,
        policy: Policy | None = None,
        settings: BridgeSettings | None = None,
        identity: str = BRIDGE_AGENT,
        on_decision: Callable[[str, str], None] | None = None,
    ) -> None:
        self.store = store
        self.policy = policy or default_policy()
        self.settings = settings or BridgeSettings()
        self.identity = identity
        self.projection = BridgeProjection(bridge_agent=identity)
        self._on_decision = on_decision
        self._locks = _KeyedLocks()
        self._waiters: dict[str, asyncio.Future[str | None]] = {}
        self._changed = asyncio.Condition()
        self._feed_task: asyncio.Task[None] | None = None
        self._ticker_task: asyncio.Task[None] | None = None
        self._snapshot_at = 0
        self._snapshot_taken = time.monotonic()  # when the last snapshot was saved (or the bridge started)
        self._started_at_sequence = 0
        self._stopping = False
        self.restored_from_snapshot: int | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Restore from the newest snapshot (if any), catch up from the log, then follow it live."""
        try:
            snapshot = await self.store.load_snapshot(self.settings.snapshot_name)
            self.projection = BridgeProjection(snapshot.state, bridge_agent=self.identity)
            self.restored_from_snapshot = snapshot.at_sequence
        except (SnapshotNotFound, InvalidSnapshot, ValueError, TypeError):
            self.projection = BridgeProjection(bridge_agent=self.identity)
        self._snapshot_at = self.projection.last_sequence
        self._snapshot_taken = time.monotonic()
        self._started_at_sequence = self.store.head_sequence
        self._feed_task = asyncio.get_running_loop().create_task(self._follow(), name="bridge-feed")
        await self.wait_applied(self._started_at_sequence)
        self._ticker_task = asyncio.get_running_loop().create_task(self._tick(), name="bridge-ticker")

    async def stop(self, *, snapshot: bool = True) -> None:
        """Stop following the log; save a snapshot of the state so the next start replays less."""
        self._stopping = True
        for task in (self._ticker_task, self._feed_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if snapshot and not self.store.closed and self.projection.last_sequence > self._snapshot_at:
            with contextlib.suppress(LighthouseError, OSError):
                await self.save_snapshot()

    async def save_snapshot(self) -> int:
        """Persist the state as of the last applied sequence; returns that sequence."""
        at = self.projection.last_sequence
        await self.store.save_snapshot(self.settings.snapshot_name, self.projection.to_state(), at)
        self._snapshot_at, self._snapshot_taken = at, time.monotonic()
        return at

    async def _follow(self) -> None:
        """Fold the log as it grows until stopped; then whoever waits for a fold hears it at once."""
        try:
            await self._follow_log()
        except Exception:  # a fold that failed (a handler's bug): nothing folds any more, say why
            _log.exception("the bridge stopped following the log")
            raise
        finally:
            self._release_waiters()

    def _release_waiters(self) -> None:
        """No fold will answer the writes still waiting: each is told now, not at its timeout (the events
        of a run whose fold raised, the ones of writes in flight)."""
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_exception(StoreClosed("the bridge stopped following the log"))

    async def _follow_log(self) -> None:
        while not self._stopping:
            subscription = self.store.subscribe(from_sequence=self.projection.last_sequence + 1)
            try:
                async for run in subscription.runs():  # all that was delivered since the last one: one
                    self._apply_run(run)  # resumption per list (a commit or more), not per event
                    if not subscription.lag:
                        async with self._changed:
                            self._changed.notify_all()
                        await self._maybe_snapshot()
            except SubscriberOverflow:
                continue
            except StoreClosed:
                return
            finally:
                await subscription.aclose()
                async with self._changed:
                    self._changed.notify_all()

    def _apply_run(self, run: list[Event]) -> None:
        """Fold a delivered run, then answer whoever waits for one of its events and count its decisions."""
        notes = self.projection.apply_run(run)
        waiters, on_decision, decisions = self._waiters, self._on_decision, _DECISIONS
        for event, note in zip(run, notes):
            if waiters:
                waiter = waiters.pop(event[0], None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(note)
            decision = decisions.get(event[1])  # the type first: most events are no decision
            if (
                decision is not None
                and note is None
                and on_decision is not None
                and event.sequence is not None
                and event.sequence > self._started_at_sequence
            ):
                on_decision(decision, str(event.data.get("approval_method")))

    async def _maybe_snapshot(self) -> None:
        every = self.settings.snapshot_every_events
        if (every and self.projection.last_sequence - self._snapshot_at >= every
                and time.monotonic() - self._snapshot_taken >= self.settings.snapshot_min_interval_seconds):
            try:
                await self.save_snapshot()
            except (LighthouseError, OSError) as exc:
                _log.warning("bridge snapshot failed: %s", exc)

    async def wait_applied(self, sequence: int, timeout: float | None = None) -> None:
        """Until the projection has folded everything up to ``sequence``."""
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: self.projection.last_sequence >= sequence or self._feed_dead()),
                timeout or self.settings.apply_timeout_seconds,
            )
        if self.projection.last_sequence < sequence:
            raise StoreClosed("the bridge stopped following the log")

    def _feed_dead(self) -> bool:
        return self._feed_task is not None and self._feed_task.done()

    async def _write(self, events: Sequence[Event]) -> list[str | None]:
        """Append atomically, then wait until the projection folded them; the notes of each event."""
        if self._feed_dead():  # nothing would fold them: refuse before anything is stored
            raise StoreClosed("the bridge stopped following the log")
        loop = asyncio.get_running_loop()
        futures = []
        for event in events:
            future: asyncio.Future[str | None] = loop.create_future()
            self._waiters[event.event_id] = future
            futures.append(future)
        try:
            await self.store.append_batch(list(events))
            return list(await asyncio.wait_for(asyncio.gather(*futures), self.settings.apply_timeout_seconds))
        finally:
            for event, future in zip(events, futures):
                self._waiters.pop(event.event_id, None)
                if future.done() and not future.cancelled():
                    future.exception()  # retrieved: gather raised only the first

    def _event(
        self,
        kind: EventType,
        aggregate: str,
        source: str,
        data: dict[str, Any],
        *,
        correlation_id: str | None,
        causation_id: str | None,
    ) -> Event:
        return Event(
            kind, aggregate_id=aggregate, data=data, source_agent=source, event_id=_new_id(),
            correlation_id=correlation_id, causation_id=causation_id,
        )

    # ------------------------------------------------------------------ commands

    def command(self, command_id: str) -> dict[str, Any]:
        command = self.projection.state["commands"].get(command_id)
        if command is None:
            raise BridgeNotFound(f"no command {command_id!r}", command_id=command_id)
        return {name: command[name] for name in _COMMAND_VIEW}

    def _choose_expert(self, proposer: str, role: str | None, preferred: str | None) -> str | None:
        if preferred is not None and preferred != proposer:
            return preferred
        experts: dict[str, str] = self.projection.state["experts"]
        load: dict[str, int] = {}
        for command in self.projection.pending_commands():
            if command["escalated_to"]:
                load[command["escalated_to"]] = load.get(command["escalated_to"], 0) + 1
        for pool in (
            [a for a, r in experts.items() if r == role and a != proposer],
            [a for a, r in experts.items() if a != proposer],
        ):
            if pool:
                return min(pool, key=lambda a: (load.get(a, 0), a))
        return None

    async def submit(
        self,
        agent_id: str,
        *,
        tool: str,
        tool_input: Mapping[str, Any],
        session_id: str | None = None,
        command_id: str | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        preferred_expert: str | None = None,
    ) -> dict[str, Any]:
        """Record a proposal and the policy's decision (or escalation) in one atomic batch."""
        _text("tool", tool, limit=_MAX_ID)
        if not isinstance(tool_input, Mapping):
            raise BridgeInvalid("tool_input must be an object", field="tool_input")
        session_id = _text("session_id", session_id, limit=256, required=False)
        command_id = _text("command_id", command_id, limit=_MAX_ID, required=False) or _new_id()
        correlation_id = _text("correlation_id", correlation_id, limit=256, required=False) or command_id
        causation_id = _text("causation_id", causation_id, limit=256, required=False)
        preferred_expert = _text("preferred_expert", preferred_expert, limit=_MAX_ID, required=False)
        async with self._locks.hold(f"command:{command_id}"):
            existing = self.projection.state["commands"].get(command_id)
            if existing is not None:
                if existing["agent_id"] == agent_id and existing["tool"] == tool and existing["tool_input"] == dict(tool_input):
                    return self.command(command_id)  # a retry of the same proposal
                raise BridgeConflict(f"command {command_id} already exists with other content", command_id=command_id)
            verdict = self.policy.classify(tool, tool_input)
            aggregate = command_aggregate(command_id)
            received = self._event(
                EventType.COMMAND_RECEIVED, aggregate, agent_id,
                {"command_id": command_id, "agent_id": agent_id, "session_id": session_id, "tool": tool,
                 "tool_input": dict(tool_input)},
                correlation_id=correlation_id, causation_id=causation_id,
            )
            validated = self._event(
                EventType.COMMAND_VALIDATED, aggregate, self.identity,
                {"command_id": command_id, **verdict.to_dict()},
                correlation_id=correlation_id, causation_id=received.event_id,
            )
            events = [received, validated]
            if verdict.risk is Risk.SAFE or (verdict.risk is Risk.DANGEROUS and self.policy.dangerous_action == "reject"):
                approved = verdict.risk is Risk.SAFE
                events.append(self._event(
                    EventType.COMMAND_APPROVED if approved else EventType.COMMAND_REJECTED, aggregate, self.identity,
                    {"command_id": command_id, "decision": "approved" if approved else "rejected",
                     "approver": self.identity, "approval_method": "policy",
                     "reason": f"policy rule {verdict.rule}: {verdict.reason}"},
                    correlation_id=correlation_id, causation_id=validated.event_id,
                ))
            else:
                events.append(self._event(
                    EventType.COMMAND_ESCALATED, aggregate, self.identity,
                    {"command_id": command_id,
                     "expert": self._choose_expert(agent_id, verdict.expert_role, preferred_expert),
                     "expert_role": verdict.expert_role, "rule": verdict.rule,
                     "timeout_s": float(self.settings.expert_timeout_seconds)},
                    correlation_id=correlation_id, causation_id=validated.event_id,
                ))
            notes = await self._write(events)
            if notes[0] is not None:
                raise BridgeConflict(notes[0], command_id=command_id)
            return self.command(command_id)

    async def wait_decision(self, command_id: str, timeout: float) -> dict[str, Any]:
        """The command once it is decided, or as it stands after ``timeout`` seconds."""
        self.command(command_id)
        timeout = min(max(0.0, timeout), self.settings.max_wait_seconds)

        def decided() -> bool:
            return self.projection.state["commands"][command_id]["status"] not in ("received", "validated", "escalated")

        async with self._changed:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait_for(lambda: decided() or self._feed_dead()), timeout)
        return self.command(command_id)

    async def decide(self, expert_id: str, command_id: str, decision: str, reason: str | None = None) -> dict[str, Any]:
        """An expert's decision on an escalated command."""
        if decision not in DECISIONS:
            raise BridgeInvalid(f"decision must be one of {list(DECISIONS)}", field="decision")
        reason = _text("reason", reason, required=False)
        async with self._locks.hold(f"command:{command_id}"):
            command = self.command(command_id)
            approved = decision == "approve"
            if command["status"] != "escalated":
                if command["approver"] == expert_id and command["decision"] == ("approved" if approved else "rejected"):
                    return command  # a retry of the same decision
                raise BridgeConflict(f"command {command_id} is {command['status']}, not awaiting an expert",
                                     status=command["status"])
            if expert_id == command["agent_id"]:
                raise BridgeForbidden("an agent cannot decide its own command")
            if command["escalated_to"] is not None and command["escalated_to"] != expert_id:
                raise BridgeForbidden(f"the command was escalated to {command['escalated_to']}")
            if command["deadline"] is not None and time.time() > command["deadline"]:
                raise BridgeConflict("the escalation timed out; the bridge is recording its timeout decision")
            event = self._event(
                EventType.COMMAND_APPROVED if approved else EventType.COMMAND_REJECTED,
                command_aggregate(command_id), expert_id,
                {"command_id": command_id, "decision": "approved" if approved else "rejected", "approver": expert_id,
                 "approval_method": "expert", "reason": reason or ""},
                correlation_id=command["correlation_id"],
                causation_id=self.projection.state["commands"][command_id]["last_event_id"],
            )
            (note,) = await self._write([event])
            if note is not None:
                raise BridgeConflict(note, command_id=command_id)
            return self.command(command_id)

    async def _time_out(self, command_id: str) -> None:
        async with self._locks.hold(f"command:{command_id}"):
            command = self.projection.state["commands"].get(command_id)
            if command is None or command["status"] != "escalated":
                return
            approve = self.settings.timeout_action == "approve" and command["risk"] == Risk.REVIEW.value
            event = self._event(
                EventType.COMMAND_APPROVED if approve else EventType.COMMAND_REJECTED,
                command_aggregate(command_id), self.identity,
                {"command_id": command_id, "decision": "approved" if approve else "rejected",
                 "approver": self.identity, "approval_method": "timeout",
                 "reason": f"no expert decision within {command['timeout_s']} s"
                 + ("" if approve else " (fails closed)")},
                correlation_id=command["correlation_id"], causation_id=command["last_event_id"],
            )
            await self._write([event])

    # ------------------------------------------------------------------ pair sessions

    def pair(self, pair_id: str) -> dict[str, Any]:
        pair = self.projection.state["pair_sessions"].get(pair_id)
        if pair is None:
            raise BridgeNotFound(f"no pair session {pair_id!r}", pair_id=pair_id)
        return {name: pair[name] for name in _PAIR_VIEW}

    def _pair_event(self, pair: Mapping[str, Any], kind: EventType, source: str, data: dict[str, Any]) -> Event:
        return self._event(kind, pair_aggregate(pair["pair_id"]), source, {"pair_id": pair["pair_id"], **data},
                           correlation_id=pair["pair_id"], causation_id=pair["last_event_id"])

    async def _pair_step(self, pair_id: str, build: Callable[[dict[str, Any]], Event | None]) -> dict[str, Any]:
        async with self._locks.hold(f"pair:{pair_id}"):
            self.pair(pair_id)
            event = build(self.projection.state["pair_sessions"][pair_id])
            if event is not None:
                (note,) = await self._write([event])
                if note is not None:
                    raise BridgeConflict(note, pair_id=pair_id)
            return self.pair(pair_id)

    async def pair_request(
        self,
        requester: str,
        *,
        mode: str,
        task: str,
        partner: str | None = None,
        pair_id: str | None = None,
        causation_id: str | None = None,
    ) -> dict[str, Any]:
        if mode not in PAIR_MODES:
            raise BridgeInvalid(f"mode must be one of {list(PAIR_MODES)}", field="mode")
        _text("task", task, limit=4096)
        partner = _text("partner", partner, limit=_MAX_ID, required=False)
        if partner == requester:
            raise BridgeInvalid("an agent cannot pair with itself", field="partner")
        pair_id = _text("pair_id", pair_id, limit=_MAX_ID, required=False) or _new_id()
        causation_id = _text("causation_id", causation_id, limit=256, required=False)
        async with self._locks.hold(f"pair:{pair_id}"):
            existing = self.projection.state["pair_sessions"].get(pair_id)
            if existing is not None:
                if existing["requester"] == requester and existing["mode"] == mode and existing["task"] == task:
                    return self.pair(pair_id)
                raise BridgeConflict(f"pair session {pair_id} already exists", pair_id=pair_id)
            event = self._event(
                EventType.PAIR_SESSION_REQUESTED, pair_aggregate(pair_id), requester,
                {"pair_id": pair_id, "requester": requester, "mode": mode, "task": task, "partner": partner,
                 "expires_s": float(self.settings.pair_request_ttl_seconds)},
                correlation_id=pair_id, causation_id=causation_id,
            )
            (note,) = await self._write([event])
            if note is not None:
                raise BridgeConflict(note, pair_id=pair_id)
            return self.pair(pair_id)

    async def pair_accept(self, agent_id: str, pair_id: str) -> dict[str, Any]:
        def build(pair: dict[str, Any]) -> Event | None:
            if pair["state"] == "active" and pair["partner"] == agent_id:
                return None
            if pair["state"] != "requested":
                raise BridgeConflict(f"pair session {pair_id} is {pair['state']}", state=pair["state"])
            if agent_id == pair["requester"]:
                raise BridgeForbidden("the requester cannot accept its own request")
            if pair["invited"] is not None and pair["invited"] != agent_id:
                raise BridgeForbidden(f"the request invited {pair['invited']}")
            return self._pair_event(pair, EventType.PAIR_SESSION_ACCEPTED, agent_id, {"partner": agent_id})

        return await self._pair_step(pair_id, build)

    def _require_active_participant(self, pair: Mapping[str, Any], agent_id: str) -> None:
        if agent_id not in (pair["requester"], pair["partner"]):
            raise BridgeForbidden("only the session's participants may do this")
        if pair["state"] != "active":
            raise BridgeConflict(f"pair session {pair['pair_id']} is {pair['state']}", state=pair["state"])

    async def pair_suggest(
        self, agent_id: str, pair_id: str, *, suggestion: str, suggestion_id: str | None = None,
        kind: str | None = None,
    ) -> dict[str, Any]:
        _text("suggestion", suggestion)
        suggestion_id = _text("suggestion_id", suggestion_id, limit=_MAX_ID, required=False) or _new_id()
        kind = _text("kind", kind, limit=_MAX_ID, required=False)

        def build(pair: dict[str, Any]) -> Event | None:
            self._require_active_participant(pair, agent_id)
            return self._pair_event(pair, EventType.PAIR_SUGGESTION_MADE, agent_id,
                                    {"suggestion_id": suggestion_id, "kind": kind, "suggestion": suggestion})

        return await self._pair_step(pair_id, build)

    async def pair_review(
        self, agent_id: str, pair_id: str, *, decision: str, feedback: str | None = None,
        accepted_suggestions: int | None = None,
    ) -> dict[str, Any]:
        """The requester's review of the session's outcome; it completes the session."""
        if decision not in REVIEW_DECISIONS:
            raise BridgeInvalid(f"decision must be one of {list(REVIEW_DECISIONS)}", field="decision")
        feedback = _text("feedback", feedback, required=False)
        if accepted_suggestions is not None and (
            isinstance(accepted_suggestions, bool) or not isinstance(accepted_suggestions, int) or accepted_suggestions < 0
        ):
            raise BridgeInvalid("accepted_suggestions must be a non-negative integer", field="accepted_suggestions")

        def build(pair: dict[str, Any]) -> Event | None:
            self._require_active_participant(pair, agent_id)
            if agent_id != pair["requester"]:
                raise BridgeForbidden("the requester reviews the session's outcome")
            return self._pair_event(pair, EventType.PAIR_REVIEW_COMPLETED, agent_id,
                                    {"decision": decision, "feedback": feedback,
                                     "accepted_suggestions": accepted_suggestions})

        return await self._pair_step(pair_id, build)

    async def pair_complete(self, agent_id: str, pair_id: str) -> dict[str, Any]:
        def build(pair: dict[str, Any]) -> Event | None:
            if pair["state"] == "completed" and pair["closed_by"] == agent_id:
                return None
            self._require_active_participant(pair, agent_id)
            return self._pair_event(pair, EventType.CUSTOM, agent_id, {"action": PAIR_COMPLETED})

        return await self._pair_step(pair_id, build)

    async def pair_cancel(self, agent_id: str, pair_id: str, *, reason: str | None = None) -> dict[str, Any]:
        reason = _text("reason", reason, required=False)

        def build(pair: dict[str, Any]) -> Event | None:
            if agent_id not in (pair["requester"], pair["partner"]):
                raise BridgeForbidden("only the session's participants may cancel it")
            if pair["state"] == "cancelled":
                return None
            if pair["state"] not in ("requested", "active"):
                raise BridgeConflict(f"pair session {pair_id} is {pair['state']}", state=pair["state"])
            return self._pair_event(pair, EventType.CUSTOM, agent_id, {"action": PAIR_CANCELLED, "reason": reason})

        return await self._pair_step(pair_id, build)

    async def _expire_pair(self, pair_id: str) -> None:
        async with self._locks.hold(f"pair:{pair_id}"):
            pair = self.projection.state["pair_sessions"].get(pair_id)
            if pair is None or pair["state"] != "requested":
                return
            await self._write([self._pair_event(pair, EventType.CUSTOM, self.identity, {"action": PAIR_EXPIRED})])

    # ------------------------------------------------------------------ deadlines

    async def _tick(self) -> None:
        """Write the timeout decisions and expiries that are due. The wall clock only *triggers* them;
        whether they count is judged by the projection from event time."""
        while not self._stopping:
            await asyncio.sleep(self.settings.tick_seconds)
            now = time.time()
            try:
                for command in self.projection.overdue_escalations(now):
                    await self._time_out(command["command_id"])
                for pair in self.projection.overdue_pair_requests(now):
                    await self._expire_pair(pair["pair_id"])
            except (LighthouseError, OSError, asyncio.TimeoutError) as exc:
                _log.warning("bridge deadline handling failed (will retry): %s", exc)

    def state(self) -> dict[str, Any]:
        return self.projection.to_state()
