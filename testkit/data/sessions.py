"""Seeded, realistic multi-agent coordination traffic, with the outcome a correct replay must rebuild.

A small discrete-event simulation: each agent is a Python generator that yields how long it waits
(thinking, waiting for an expert, waiting for a pair partner); a heap runs them in simulated-time
order, so sessions of different agents interleave as they would on a real platform, and shared state
(the workspace files) changes in the same order as the emitted events. One ``random.Random(seed)``
drives everything and no set or hash order is ever iterated, so a seed gives the same bytes anywhere.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import random
from collections import deque
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final, cast

from testkit.data.agents import BRIDGE_AGENT, Agent, AgentRole, make_roster, pick_expert, pick_partner
from testkit.data.commands import FileEffect, Proposal, Risk, propose
from testkit.data.events import SCHEMA_VERSION, TrafficClass, random_uuid, traffic_class
from testkit.data.expected import AgentSessionOutcome, CommandOutcome, ExpectedOutcome, PairOutcome
from testkit.data.invalid import InvalidEventGenerator
from testkit.data.payloads import PayloadSizes, TextFiller
from testkit.data.timing import TimingModel

__all__ = ["AgentSessionGenerator", "GeneratedSession", "SessionPlan", "TrafficItem"]

_PAIR_MODES: Final[tuple[str, ...]] = ("PASSIVE", "ACTIVE", "COLLABORATIVE", "REVIEW")
_MODULES: Final[tuple[str, ...]] = ("api", "auth", "bridge", "cache", "cli", "events", "models", "storage")
_GENERATOR_TAG: Final[str] = "testkit.data/1"


@dataclass(frozen=True, slots=True)
class SessionPlan:
    """The knobs of generated traffic. Rates are probabilities per proposal / request / session."""

    danger_ratio: float = 0.08  # share of proposals that are dangerous (policy rejects them)
    escalation_rate: float = 0.12  # share of proposals that need review (escalated to an expert)
    expert_timeout_rate: float = 0.1  # share of escalations the expert never answers in time
    expert_approval_rate: float = 0.6
    failure_rate: float = 0.05  # share of approved commands that fail when run
    tricky_share: float = 0.15  # share of safe proposals a naive substring filter would flag
    pair_rate: float = 0.05  # share of validation activities that are pair sessions
    pair_accept_rate: float = 0.75
    pair_cancel_rate: float = 0.5  # share of never-accepted pair requests the requester cancels
    disconnect_rate: float = 0.05  # share of sessions that end with the agent vanishing
    invalid_ratio: float = 0.0  # share of invalid events in :meth:`AgentSessionGenerator.traffic`
    # validation / state / monitoring share of events. Every file change follows a validated command,
    # so validation shares much below 2/3 are out of reach; the scheduler then gets as close as it can.
    mix: tuple[float, float, float] = (0.7, 0.2, 0.1)
    payload_sizes: PayloadSizes = field(default_factory=PayloadSizes)
    timing: TimingModel = field(default_factory=TimingModel)

    def __post_init__(self) -> None:
        for name in ("danger_ratio", "escalation_rate", "expert_timeout_rate", "expert_approval_rate",
                     "failure_rate", "tricky_share", "pair_rate", "pair_accept_rate", "pair_cancel_rate",
                     "disconnect_rate", "invalid_ratio"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within 0..1, got {value}")
        if self.danger_ratio + self.escalation_rate > 1.0:
            raise ValueError("danger_ratio + escalation_rate must not exceed 1")
        if len(self.mix) != 3 or min(self.mix) < 0 or abs(sum(self.mix) - 1.0) > 1e-9:
            raise ValueError(f"mix must be three non-negative shares summing to 1, got {self.mix}")


@dataclass(frozen=True, slots=True)
class GeneratedSession:
    """One agent session: its events (including experts' and partners' answers) and their expected outcome."""

    session_id: str
    agent_id: str
    role: str
    started_at: float  # simulated true time, without the agent's clock skew
    ended_at: float
    events: tuple[dict[str, Any], ...]
    expected: ExpectedOutcome


@dataclass(frozen=True, slots=True)
class TrafficItem:
    """An item of mixed traffic: a valid event (``expected_error`` None) or an invalid one and its error code."""

    event: dict[str, Any]
    expected_error: str | None
    kind: str  # "valid" or an InvalidKind value


class AgentSessionGenerator:
    """Entry point: ``AgentSessionGenerator(seed, agents=5, danger_ratio=0.1).events(1000)``.

    Every call of :meth:`events`, :meth:`sessions` or :meth:`traffic` replays the simulation from the
    seed, so iterators are independent and repeatable. Keyword knobs override fields of ``plan``.
    Yielded dicts are shared with the session records: copy before mutating.
    """

    def __init__(
        self,
        seed: int,
        agents: int | Sequence[AgentRole | str] = 5,
        *,
        plan: SessionPlan | None = None,
        **knobs: Any,
    ) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        self.seed = seed
        self.plan = replace(plan or SessionPlan(), **knobs)
        self._agents: int | tuple[AgentRole, ...] = (
            agents if isinstance(agents, int) else tuple(AgentRole(a) for a in agents)
        )
        # The same draws the simulation makes first, so this is exactly the roster every stream uses.
        self.roster: tuple[Agent, ...] = make_roster(
            random.Random(seed), self._agents, max_clock_skew_s=self.plan.timing.max_clock_skew_s
        )

    def events(self, n: int | None = None) -> Iterator[dict[str, Any]]:
        """The first ``n`` events of the interleaved stream (endless if ``n`` is None)."""
        world = _World(self.seed, self._agents, self.plan)
        produced = 0
        while n is None or produced < n:
            while not world.outbox:
                world.step()
                world.finished.clear()  # the event stream needs no session records: keep memory flat
            yield world.outbox.popleft()
            produced += 1

    def sessions(self, n: int | None = None) -> Iterator[GeneratedSession]:
        """The first ``n`` sessions to finish, each complete with its expected outcome."""
        world = _World(self.seed, self._agents, self.plan)
        produced = 0
        while n is None or produced < n:
            while not world.finished:
                world.step()
                world.outbox.clear()
            yield world.finished.popleft()
            produced += 1

    def traffic(self, n: int | None = None) -> Iterator[TrafficItem]:
        """The event stream with a share ``invalid_ratio`` of invalid single events mixed in.

        Invalid items come from their own rng, so the valid events are exactly those of :meth:`events`.
        """
        mixer = random.Random(f"{self.seed}:traffic")
        bad = InvalidEventGenerator(mixer.getrandbits(63))
        valid = self.events()
        produced = 0
        while n is None or produced < n:
            if mixer.random() < self.plan.invalid_ratio:
                case = bad.draw(("event",))  # single-event kinds: the payload is a dict
                yield TrafficItem(cast(dict[str, Any], case.payload), case.expected_error, case.kind.value)
            else:
                yield TrafficItem(next(valid), None, "valid")
            produced += 1


class _World:
    """The simulation state shared by every agent: clock, workspace, output queues and the mix counters."""

    def __init__(self, seed: int, agents: int | tuple[AgentRole, ...], plan: SessionPlan) -> None:
        self.rng = random.Random(seed)
        self.plan = plan
        self.timing = plan.timing
        self.roster = make_roster(self.rng, agents, max_clock_skew_s=self.timing.max_clock_skew_s)
        self.skew: dict[str, float] = {a.agent_id: a.clock_skew_s for a in self.roster}
        self.skew[BRIDGE_AGENT] = 0.0
        self.filler = TextFiller(self.rng)
        self.files: dict[str, str] = {}  # the live workspace: path -> content hash
        self.registrations: dict[str, str] = {}  # agent -> event id of its current registration
        self.class_counts: dict[TrafficClass, int] = {c: 0 for c in TrafficClass}
        self.outbox: deque[dict[str, Any]] = deque()
        self.finished: deque[GeneratedSession] = deque()
        self.now = self.timing.start
        self._new_paths = itertools.count(1)
        self._tie = itertools.count()
        self._heap: list[tuple[float, int, Generator[float, None, None]]] = []
        for agent in self.roster:
            first = self.now + self.rng.uniform(0.0, 900.0)
            heapq.heappush(self._heap, (first, next(self._tie), self._agent_life(agent)))

    def step(self) -> None:
        """Run the earliest waiting agent until it waits again."""
        wake, _, process = heapq.heappop(self._heap)
        self.now = wake
        delay = next(process)  # agent lives are endless
        heapq.heappush(self._heap, (wake + delay, next(self._tie), process))

    def _agent_life(self, agent: Agent) -> Generator[float, None, None]:
        while True:
            yield from _SessionRun(self, agent).play()
            yield self.timing.next_session_start(self.rng, self.now) - self.now

    def next_class(self) -> TrafficClass:
        """Pick the next activity's class by how far each class lags its share of the mix."""
        classes = tuple(TrafficClass)
        total = sum(self.class_counts.values()) + 1
        lag = [max(0.0, share * total - self.class_counts[c]) for c, share in zip(classes, self.plan.mix)]
        return self.rng.choices(classes, weights=lag)[0]

    def new_path(self) -> str:
        number = next(self._new_paths)
        module = self.rng.choice(_MODULES)
        return self.rng.choice((f"src/{module}_{number}.py", f"tests/test_{module}_{number}.py",
                                f"docs/{module}_{number}.md", f"web/{module}_{number}.ts"))


class _SessionRun:
    """One agent session being played: emits events, and writes down the outcome it intends."""

    def __init__(self, world: _World, agent: Agent) -> None:
        self.world = world
        self.rng = world.rng
        self.agent = agent
        self.session_id = random_uuid(world.rng)
        self.events: list[dict[str, Any]] = []
        self.expected = ExpectedOutcome()
        self.started_at = world.now
        self.session_cause = ""  # the session_started event: the cause of every flow in this session
        self.lifecycle_cause = ""  # the last event of the session's own chain (start, heartbeats, end)

    # plumbing ------------------------------------------------------------------------------------------------

    def emit(
        self,
        source: str,
        event_type: str,
        aggregate: tuple[str, str],
        correlation_id: str,
        causation_id: str | None,
        data: dict[str, Any],
    ) -> str:
        world = self.world
        aggregate_type, key = aggregate
        cls = traffic_class(event_type)
        event_id = random_uuid(world.rng)
        event = {
            "event_id": event_id,
            "event_type": event_type,
            "aggregate_id": f"{aggregate_type}:{key}",
            "aggregate_type": aggregate_type,
            "correlation_id": correlation_id,
            "causation_id": causation_id,
            "source_agent": source,
            "timestamp": round(world.now + world.skew[source], 6),
            "data": data,
            "metadata": {"session_id": self.session_id, "traffic": cls.value, "generator": _GENERATOR_TAG},
            "schema_version": SCHEMA_VERSION,
        }
        self.events.append(event)
        world.outbox.append(event)
        world.class_counts[cls] += 1
        self.expected.event_count += 1
        self.expected.tally(source).events += 1
        return event_id

    def step(self) -> float:
        return self.world.timing.step_latency(self.rng)

    def blob(self, header: str) -> str:
        return self.world.filler.text(self.world.plan.payload_sizes.draw(self.rng), header)

    # the session ---------------------------------------------------------------------------------------------

    def play(self) -> Generator[float, None, None]:
        world, agent, rng, timing = self.world, self.agent, self.rng, self.world.timing
        me = agent.agent_id
        registration = world.registrations.get(me)
        if registration is None:
            registration = self.emit(me, "agent_registered", ("agent", me), me, None, {
                "agent_id": me, "role": agent.role.value, "capabilities": list(agent.capabilities),
            })
            world.registrations[me] = registration
            self.expected.tally(me).registrations += 1
            yield self.step()
        sid = self.session_id
        self.session_cause = self.lifecycle_cause = self.emit(
            me, "session_started", ("session", sid), sid, registration,
            {"session_id": sid, "agent_id": me, "role": agent.role.value},
        )
        self.expected.agent_sessions[sid] = AgentSessionOutcome(sid, me)
        self.expected.tally(me).sessions += 1
        burst_until = world.now + timing.burst_duration_s if rng.random() < timing.burst_probability else world.now
        for _ in range(timing.session_length(rng)):
            yield timing.think_time(rng, world.now, bursting=world.now < burst_until)
            cls = world.next_class()
            if cls is TrafficClass.MONITORING:
                self.heartbeat()
            elif cls is TrafficClass.STATE:
                yield from self.command(writes_files=True)
            elif rng.random() < world.plan.pair_rate:
                yield from self.pair()
            else:
                yield from self.command(writes_files=False)
        yield timing.think_time(rng, world.now, bursting=False)
        outcome = self.expected.agent_sessions[sid]
        if rng.random() < world.plan.disconnect_rate:
            self.emit(me, "agent_disconnected", ("agent", me), sid, self.lifecycle_cause,
                      {"agent_id": me, "session_id": sid, "reason": "heartbeat_timeout"})
            outcome.state = "disconnected"
            del world.registrations[me]  # it must register again before its next session
        else:
            self.emit(me, "session_ended", ("session", sid), sid, self.lifecycle_cause,
                      {"session_id": sid, "agent_id": me, "reason": "completed"})
            outcome.state = "ended"
        world.finished.append(GeneratedSession(
            sid, me, agent.role.value, self.started_at, world.now, tuple(self.events), self.expected,
        ))

    def heartbeat(self) -> None:
        me, sid = self.agent.agent_id, self.session_id
        self.lifecycle_cause = self.emit(me, "agent_heartbeat", ("agent", me), sid, self.lifecycle_cause, {
            "agent_id": me, "session_id": sid, "status": self.rng.choice(("busy", "idle", "waiting")),
            "load": round(self.rng.random(), 3), "pending_commands": self.rng.randint(0, 4),
        })
        self.expected.agent_sessions[sid].heartbeats += 1
        self.expected.tally(me).heartbeats += 1

    # a command: received -> validated -> (escalated -> decided by an expert or timed out) -> executed/failed

    def command(self, *, writes_files: bool) -> Generator[float, None, None]:
        world, rng, plan, me = self.world, self.rng, self.world.plan, self.agent.agent_id
        draw = rng.random()
        risk = (Risk.DANGEROUS if draw < plan.danger_ratio
                else Risk.REVIEW if draw < plan.danger_ratio + plan.escalation_rate else Risk.SAFE)
        proposal = propose(rng, risk, writes_files=writes_files, files=list(world.files),
                           new_path=world.new_path, tricky_share=plan.tricky_share)
        command_id, flow = random_uuid(rng), random_uuid(rng)
        aggregate = ("command", command_id)
        outcome = self.expected.commands[command_id] = CommandOutcome(command_id, me, proposal.tool)
        mine = self.expected.tally(me)
        mine.commands_proposed += 1
        cause = self.emit(me, "command_received", aggregate, flow, self.session_cause, {
            "command_id": command_id, "agent_id": me, "session_id": self.session_id,
            "tool": proposal.tool, "tool_input": proposal.tool_input,
        })
        yield self.step()
        cause = self.emit(BRIDGE_AGENT, "command_validated", aggregate, flow, cause, {
            "command_id": command_id, "risk": risk.value, "rule": proposal.rule,
        })
        outcome.status, outcome.risk = "validated", risk.value
        yield self.step()
        if risk is Risk.REVIEW:
            decision = yield from self.escalate(proposal, outcome, aggregate, flow, cause)
        else:
            approved = risk is Risk.SAFE
            decision = (BRIDGE_AGENT, approved, "policy", f"policy rule {proposal.rule}", cause)
        decider, approved, method, reason, cause = decision
        outcome.decision = outcome.status = "approved" if approved else "rejected"
        outcome.approver, outcome.approval_method = decider, method
        cause = self.emit(decider, "command_approved" if approved else "command_rejected", aggregate, flow, cause, {
            "command_id": command_id, "decision": outcome.decision, "approver": decider,
            "approval_method": method, "reason": reason,
        })
        self.expected.tally(decider).decisions_made += 1
        if not approved:
            mine.commands_rejected += 1
            return
        mine.commands_approved += 1
        yield rng.lognormvariate(-1.0, 1.0)  # the command runs
        changes = self.plan_changes(proposal)
        if changes is None or rng.random() < plan.failure_rate:
            exit_code = 1 if changes is None else rng.choice((1, 2, 127, 137))
            self.emit(me, "command_failed", aggregate, flow, cause, {
                "command_id": command_id, "exit_code": exit_code, "stderr": self.blob(f"exit {exit_code}"),
            })
            outcome.status = "failed"
            mine.commands_failed += 1
            return
        cause = self.emit(me, "command_executed", aggregate, flow, cause, {
            "command_id": command_id, "exit_code": 0, "duration_ms": rng.randint(5, 30_000),
            "output": self.blob(f"$ {proposal.tool}"),
        })
        outcome.status = "executed"
        mine.commands_executed += 1
        for path, delete in changes:
            yield self.step()
            cause = self.change_file(path, delete=delete, command_id=command_id, flow=flow, cause=cause)

    def escalate(
        self, proposal: Proposal, outcome: CommandOutcome, aggregate: tuple[str, str], flow: str, cause: str
    ) -> Generator[float, None, tuple[str, bool, str, str, str]]:
        world, rng, plan, timing = self.world, self.rng, self.world.plan, self.world.timing
        wanted = proposal.expert_role or AgentRole.SECURITY_EXPERT
        expert = pick_expert(rng, world.roster, wanted, exclude=self.agent.agent_id)
        expert_id = expert.agent_id if expert else None
        cause = self.emit(BRIDGE_AGENT, "command_escalated", aggregate, flow, cause, {
            "command_id": outcome.command_id, "expert": expert_id, "expert_role": wanted.value,
            "rule": proposal.rule, "timeout_s": timing.escalation_timeout_s,
        })
        outcome.status, outcome.escalated_to = "escalated", expert_id
        self.expected.tally(self.agent.agent_id).commands_escalated += 1
        if expert is None or rng.random() < plan.expert_timeout_rate:
            yield timing.escalation_timeout_s
            return BRIDGE_AGENT, False, "timeout", "no expert decision in time (fails closed)", cause
        yield min(timing.expert_latency(rng), timing.escalation_timeout_s)
        approved = rng.random() < plan.expert_approval_rate
        reason = "reviewed: acceptable in this workspace" if approved else "reviewed: too risky"
        return expert.agent_id, approved, "expert", reason, cause

    def plan_changes(self, proposal: Proposal) -> list[tuple[str, bool]] | None:
        """The file changes an executed command makes, as (path, deleted); None if it cannot run."""
        files = self.world.files
        effect = proposal.effect
        if effect is FileEffect.NONE:
            return []
        if effect is FileEffect.EDIT:
            return [(proposal.paths[0], False)] if proposal.paths[0] in files else None  # no such file
        if effect in (FileEffect.WRITE, FileEffect.BUILD):
            return [(path, False) for path in proposal.paths]
        if effect is FileEffect.FORMAT:
            return [(path, False) for path in proposal.paths if path in files]
        if effect is FileEffect.DELETE:
            return [(path, True) for path in proposal.paths if path in files]
        return [(path, True) for path in files if path.startswith("build/")]  # CLEAN

    def change_file(self, path: str, *, delete: bool, command_id: str, flow: str, cause: str) -> str:
        files, me = self.world.files, self.agent.agent_id
        previous = files.get(path)
        if delete:
            event_id = self.emit(me, "file_deleted", ("file", path), flow, cause, {
                "path": path, "previous_hash": previous, "command_id": command_id,
            })
            del files[path]
            self.expected.files[path] = None
        else:
            content = self.blob(f"# {path} ({command_id[:8]})")
            digest = hashlib.sha256(content.encode()).hexdigest()
            event_id = self.emit(me, "file_modified" if previous else "file_created", ("file", path), flow, cause, {
                "path": path, "content": content, "content_hash": digest, "previous_hash": previous,
                "size": len(content), "command_id": command_id,
            })
            files[path] = self.expected.files[path] = digest
        self.expected.tally(me).file_changes += 1
        return event_id

    # a pair session: requested -> accepted (or never) -> suggestions -> review completed (or cancelled)

    def pair(self) -> Generator[float, None, None]:
        world, rng, plan, me = self.world, self.rng, self.world.plan, self.agent.agent_id
        pair_id = random_uuid(rng)
        aggregate = ("pair_session", pair_id)
        mode = rng.choice(_PAIR_MODES)
        partner = pick_partner(rng, world.roster, exclude=me)
        outcome = self.expected.pair_sessions[pair_id] = PairOutcome(pair_id, me, mode)
        cause = self.emit(me, "pair_session_requested", aggregate, pair_id, self.session_cause, {
            "pair_id": pair_id, "requester": me, "mode": mode,
            "task": f"{rng.choice(('review', 'refactor', 'debug', 'design'))} {rng.choice(_MODULES)}",
        })
        if partner is None or rng.random() >= plan.pair_accept_rate:
            if rng.random() < plan.pair_cancel_rate:
                yield rng.uniform(60.0, 300.0)
                self.cancel_pair(outcome, aggregate, cause, "never accepted")
            return  # otherwise it stays requested forever
        yield rng.uniform(2.0, 60.0)
        cause = self.emit(partner.agent_id, "pair_session_accepted", aggregate, pair_id, cause, {
            "pair_id": pair_id, "partner": partner.agent_id,
        })
        outcome.partner, outcome.state = partner.agent_id, "active"
        for number in range(rng.randint(0, 4)):
            yield world.timing.think_time(rng, world.now, bursting=False)
            cause = self.emit(partner.agent_id, "pair_suggestion_made", aggregate, pair_id, cause, {
                "pair_id": pair_id, "suggestion_id": f"{pair_id[:8]}-{number + 1}",
                "kind": rng.choice(("rename", "extract", "test", "security", "performance")),
                "suggestion": self.blob(f"suggestion {number + 1}"),
            })
            outcome.suggestions += 1
        yield world.timing.think_time(rng, world.now, bursting=False)
        if rng.random() < 0.1:
            self.cancel_pair(outcome, aggregate, cause, "requester stopped")
            return
        decision = rng.choices(("approve", "modify", "reject"), weights=(0.6, 0.25, 0.15))[0]
        self.emit(me, "pair_review_completed", aggregate, pair_id, cause, {
            "pair_id": pair_id, "decision": decision, "accepted_suggestions": outcome.suggestions,
            "feedback": rng.choice(("looks good", "needs tests", "split this change", "rename for clarity")),
        })
        outcome.state, outcome.review_decision = "completed", decision

    def cancel_pair(self, outcome: PairOutcome, aggregate: tuple[str, str], cause: str, reason: str) -> None:
        self.emit(self.agent.agent_id, "custom", aggregate, outcome.pair_id, cause, {
            "action": "pair_session_cancelled", "pair_id": outcome.pair_id, "reason": reason,
        })
        outcome.state = "cancelled"
