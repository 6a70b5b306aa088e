"""A store-agnostic workload driver for crash tests: agent traffic in a child, every write journalled.

A worker opens any adapter (built from an :class:`~testkit.adapters.AdapterSpec`, so it works for
every store), lets ``clients`` concurrent clients append generated agent traffic (single events and
batches), and records each write as invoke -> ok / fail / unknown in a
:class:`~testkit.checkers.History` journal. The journal is written with one ``os.write`` per
record, so it survives the worker's SIGKILL; keep ``journal_dir`` on another filesystem than
``data_dir`` so that it also survives a power cut of the data disk.

Crash cycles must be cheap (hundreds per test), and a fresh interpreter costs ~0.3 s of imports, so
:class:`WorkloadServer` starts one pre-imported *zygote* child that forks a worker per incarnation
in milliseconds. The zygote reaps a worker only when asked, so its PID cannot be reused while the
caller may still signal it: we only ever kill processes we started.

The worker runs in :class:`Phase` steps; a phase may hold resource limits lowered (in the worker
only) with :func:`~testkit.faults.rlimits.pressure`, which lets a test show that a store under
pressure answers with typed errors and recovers once the pressure goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import json
import os
import random
import signal
import socket
import sys
import time
import traceback
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from testkit.adapters.base import AdapterError, ReadsById, StoredEvent, content_digest
from testkit.adapters.factory import AdapterSpec
from testkit.checkers.history import FAIL, OK, History, OpKind, OpStatus, is_definite_failure
from testkit.checkers.voids import format_sequences
from testkit.faults._system import make_private_dir
from testkit.faults.errors import FaultError, InvalidFaultSpec
from testkit.faults.process import ChildProcess
from testkit.faults.records import FaultClock, FaultRecord
from testkit.faults.rlimits import Limits, pressure

__all__ = [
    "JOURNAL_NAME",
    "ForkedWorker",
    "Phase",
    "Recovered",
    "WorkloadServer",
    "WorkloadSpec",
    "import_roots",
    "journals",
    "load_history",
    "readback_problems",
    "recover",
    "recover_async",
    "run_incarnation",
]

JOURNAL_NAME = _JOURNAL = "journal-{:05d}.jsonl"  # one per incarnation
_OPENED = "opened-{:05d}.json"
_RESULT = "result-{:05d}.json"
_CONNECT_TIMEOUT_S = 60.0
#: How long an incarnation may take to get its first write acknowledged (a loaded 2-core machine is slow).
FIRST_ACK_TIMEOUT_S = 30.0

#: One write to make: its events and their content digests.
Operation = tuple[list[dict[str, Any]], list[str]]


@dataclass(frozen=True, slots=True)
class Phase:
    """One step of a worker's life. ``ops_per_client`` None runs until ``seconds`` pass (or a kill).

    ``limits`` are lowered for the phase only (soft limits, in the worker); ``headroom`` lowers them
    relative to what the worker uses when the phase starts (``nofile``: descriptors open + n;
    ``address_space``: virtual size + n bytes; ``file_size``: largest file in the data directory + n
    bytes), which is what a test can size without knowing the worker's footprint. Under limits the
    phase's events are generated before the limits bite, so that the harness itself does not meet them.
    ``until_acks`` ends the phase early once that many writes were acknowledged in it (how a test sees
    a store resume). ``payload_max_bytes`` overrides the spec's payload cap; ``payload_min_bytes``
    makes every payload at least that large (big events meet memory limits).
    """

    ops_per_client: int | None = None
    seconds: float = 60.0
    limits: Limits | None = None
    headroom: Limits | None = None
    until_acks: int | None = None
    payload_max_bytes: int | None = None
    payload_min_bytes: int | None = None
    name: str = ""

    def __post_init__(self) -> None:
        if self.ops_per_client is not None and self.ops_per_client < 0:
            raise InvalidFaultSpec(f"ops_per_client must be >= 0, got {self.ops_per_client}")
        if self.seconds <= 0:
            raise InvalidFaultSpec(f"seconds must be > 0, got {self.seconds}")
        if (self.limits or self.headroom) and self.ops_per_client is None:
            raise InvalidFaultSpec("a phase under limits needs ops_per_client (its events are made beforehand)")
        if self.limits and self.headroom:
            raise InvalidFaultSpec("give limits or headroom, not both")

    def resolve_limits(self, data_dir: str) -> Limits | None:
        """The absolute limits for this phase, measured now (in the worker)."""
        if self.headroom is None:
            return self.limits
        room = self.headroom
        nofile = address_space = file_size = None
        if room.nofile is not None:
            nofile = len(os.listdir("/proc/self/fd")) + room.nofile
        if room.address_space is not None:
            address_space = _virtual_size() + room.address_space
        if room.file_size is not None:
            sizes = [p.stat().st_size for p in Path(data_dir).rglob("*") if p.is_file()]
            file_size = max(sizes, default=0) + room.file_size
        return Limits(nofile=nofile, address_space=address_space, file_size=file_size)


def _virtual_size() -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise FaultError("no VmSize in /proc/self/status")


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    """Everything a worker needs, picklable so that a child can rebuild it.

    ``seed`` decides every event (per incarnation and client), so a failing run replays exactly.
    ``op_timeout_s`` turns a write the store never answers into ``unknown`` instead of a hang.
    ``resend_share``: like a real client (and Jepsen's) after a restart, each incarnation first re-sends
    that share of the previous incarnation's acknowledged and unknown-outcome writes with the same ids
    (the checker's duplicate and retry rules judge them); ``readback``: each incarnation first reads that
    many acknowledged events of earlier incarnations back by id (``get``) and records every mismatch in
    ``readback-NNNNN.json`` (see :func:`readback_problems`).
    """

    adapter: AdapterSpec
    data_dir: str
    journal_dir: str
    seed: int
    clients: int = 4
    batch_share: float = 0.25
    max_batch: int = 8
    payload_max_bytes: int = 2048
    phases: tuple[Phase, ...] = (Phase(),)
    op_timeout_s: float = 10.0
    error_backoff_s: float = 0.002
    snapshot_every_s: float | None = None  # also save projection snapshots this often (snapshot_workload)
    resend_share: float = 0.0  # share of the previous incarnation's ok/unknown writes re-sent with the same ids
    readback: int = 0  # acknowledged events of earlier incarnations read back by id after open

    def __post_init__(self) -> None:
        if self.clients < 1:
            raise InvalidFaultSpec(f"clients must be >= 1, got {self.clients}")
        if not 0.0 <= self.batch_share <= 1.0:
            raise InvalidFaultSpec(f"batch_share must be within 0..1, got {self.batch_share}")
        if self.max_batch < 2 and self.batch_share > 0:
            raise InvalidFaultSpec("max_batch must be >= 2 when batches are drawn")
        if self.payload_max_bytes < 320:
            raise InvalidFaultSpec("payload_max_bytes must be >= 320 (the generator's median payload)")
        if not self.phases:
            raise InvalidFaultSpec("a workload needs at least one phase")
        if not 0.0 <= self.resend_share <= 1.0 or self.readback < 0:
            raise InvalidFaultSpec("resend_share must be within 0..1 and readback >= 0")

    def replace(self, **changes: Any) -> WorkloadSpec:
        return dataclasses.replace(self, **changes)


# ------------------------------------------------------------------------------------------ the worker


@dataclass
class _PhaseTally:
    name: str
    ok: int = 0
    fail: int = 0
    unknown: int = 0
    acked_events: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    untyped: Counter[str] = field(default_factory=Counter)
    untyped_examples: list[str] = field(default_factory=list)
    harness: Counter[str] = field(default_factory=Counter)
    timeouts: int = 0
    limit_records: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "fail": self.fail,
            "unknown": self.unknown,
            "acked_events": self.acked_events,
            "errors": dict(self.errors),
            "untyped": dict(self.untyped),
            "untyped_examples": self.untyped_examples[:5],
            "harness_errors": dict(self.harness),
            "timeouts": self.timeouts,
            "limit_records": self.limit_records,
            "seconds": self.seconds,
        }


def _event_stream(
    spec: WorkloadSpec, incarnation: int, client: int, payload_max: int, payload_min: int | None = None
) -> Iterator[dict[str, Any]]:
    from testkit.data import AgentSessionGenerator, PayloadSizes

    seed = random.Random(f"{spec.seed}:{incarnation}:{client}").getrandbits(62)
    if payload_min is None:
        sizes = PayloadSizes(max_bytes=payload_max, tail_start_bytes=min(4096, payload_max))
    else:
        sizes = PayloadSizes(min_bytes=payload_min, median_bytes=payload_min, max_bytes=payload_max, tail_share=0.0)
    return AgentSessionGenerator(seed, agents=3, payload_sizes=sizes).events()


def _write_json(path: Path, document: dict[str, Any]) -> None:
    """Whole-file write with one ``os.write`` then rename: a reader never sees half a document."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, json.dumps(document, default=str).encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


class _StoreRaised(Exception):
    """Wraps an error the store (not the harness) raised, so the two are counted apart."""

    def __init__(self, error: Exception) -> None:
        super().__init__(f"{type(error).__name__}: {error}")
        self.error = error


async def _run_phase(
    spec: WorkloadSpec,
    adapter: Any,
    history: History,
    incarnation: int,
    phase: Phase,
    tally: _PhaseTally,
    operations: list[Iterator[Operation]],
    sent: _SentLog | None = None,
) -> None:
    deadline = time.monotonic() + phase.seconds
    done = asyncio.Event()

    async def call_store(events: list[dict[str, Any]]) -> Any:
        try:
            if len(events) > 1:
                return await asyncio.wait_for(adapter.append_batch(events), spec.op_timeout_s)
            return await asyncio.wait_for(adapter.append(events[0]), spec.op_timeout_s)
        except (AdapterError, TimeoutError):
            raise
        except Exception as exc:
            raise _StoreRaised(exc) from exc

    async def client(number: int) -> None:
        client_id = f"i{incarnation}-c{number}"
        ops = operations[number]
        count = 0
        while not done.is_set() and time.monotonic() < deadline:
            if phase.ops_per_client is not None and count >= phase.ops_per_client:
                return
            count += 1
            try:
                events, digests = next(ops)
                kind = OpKind.APPEND_BATCH if len(events) > 1 else OpKind.APPEND
                if sent is not None:
                    sent.record(events)
                op = history.invoke(kind, events, client_id=client_id, digests=digests)
            except StopIteration:
                return
            except Exception as exc:  # the harness itself failed (e.g. under a memory limit)
                tally.harness[type(exc).__name__] += 1
                await asyncio.sleep(spec.error_backoff_s)
                continue
            try:
                stored = await call_store(events)
            except AdapterError as exc:
                tally.errors[exc.code] += 1
                _settle(history, op, exc, definite=is_definite_failure(exc))
            except TimeoutError as exc:  # the store never answered: outcome unknown
                tally.timeouts += 1
                _settle(history, op, exc, definite=False)
            except _StoreRaised as wrapped:  # untyped: the suite judges it (typed_errors)
                tally.untyped[type(wrapped.error).__name__] += 1
                if len(tally.untyped_examples) < 5:
                    tally.untyped_examples.append(str(wrapped)[:300])
                _settle(history, op, wrapped.error, definite=False)
            else:
                history.ok(op, [e.sequence for e in (stored if isinstance(stored, list) else [stored])])
                tally.ok += 1
                tally.acked_events += len(events)
                if phase.until_acks is not None and tally.ok >= phase.until_acks:
                    done.set()
                continue
            await asyncio.sleep(spec.error_backoff_s)

    started = time.monotonic()
    await asyncio.gather(*(client(n) for n in range(spec.clients)))
    tally.seconds = time.monotonic() - started


def _settle(history: History, op: int, error: BaseException, *, definite: bool) -> None:
    reason = f"{getattr(error, 'code', type(error).__name__)}: {error}"[:460]
    numbered = getattr(error, "sequences", None)
    if numbered:
        reason += " " + format_sequences(*numbered)  # held to voiding them (testkit.checkers.voids)
    if definite:
        history.fail(op, reason)
    else:
        history.unknown(op, reason)


def _operations(spec: WorkloadSpec, stream: Iterator[dict[str, Any]], rng: random.Random) -> Iterator[Operation]:
    """Writes to make: events with their digests computed up front (so no limit hits the harness later)."""
    while True:
        batch = rng.random() < spec.batch_share
        events = [next(stream) for _ in range(rng.randint(2, spec.max_batch) if batch else 1)]
        yield events, [content_digest(e) for e in events]


def _count_outcomes(history: History, first_op: int, tally: _PhaseTally) -> None:
    cols = history.columns()
    for op in range(first_op, len(cols.status)):
        code = cols.status[op]
        if code == FAIL:
            tally.fail += 1
        elif code != OK:
            tally.unknown += 1


_SENT = "sent-{:05d}.msgpack"
_READBACK = "readback-{:05d}.json"
_MAX_RESENDS = 64


class _SentLog:
    """The events of every write, so that a later incarnation can re-send them unchanged (one write each)."""

    def __init__(self, path: Path) -> None:
        import msgpack

        self._pack = msgpack.Packer(use_bin_type=True, default=str).pack
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def record(self, events: list[dict[str, Any]]) -> None:
        os.write(self._fd, self._pack(events))

    def close(self) -> None:
        os.close(self._fd)


def _sent_events(journal_dir: Path, incarnation: int) -> dict[str, list[dict[str, Any]]]:
    import msgpack

    path = journal_dir / _SENT.format(incarnation)
    if not path.exists():
        return {}
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(path.read_bytes())
    found: dict[str, list[dict[str, Any]]] = {}
    with contextlib.suppress(ValueError, msgpack.ExtraData):  # a record torn by the kill ends the file
        for events in unpacker:
            found[events[0]["event_id"]] = events
    return found


def _resends(spec: WorkloadSpec, incarnation: int) -> list[Operation]:
    """A seeded share of the previous incarnation's acknowledged and unknown writes, with their events."""
    journal_dir = Path(spec.journal_dir)
    previous = journal_dir / _JOURNAL.format(incarnation - 1)
    if incarnation == 0 or not previous.exists():
        return []
    sent = _sent_events(journal_dir, incarnation - 1)
    rng = random.Random(f"{spec.seed}:{incarnation}:resend")
    chosen: list[Operation] = []
    for op in History.load(previous):
        if op.status == OpStatus.FAIL or op.event_ids[0] not in sent or rng.random() >= spec.resend_share:
            continue
        events = sent[op.event_ids[0]]
        chosen.append((events, [content_digest(e) for e in events]))
        if len(chosen) >= _MAX_RESENDS:
            break
    return chosen


async def _read_back(spec: WorkloadSpec, adapter: Any, incarnation: int) -> None:
    """Read a sample of acknowledged events back by id; record each one missing or not as acknowledged."""
    if not isinstance(adapter, ReadsById):
        return
    journal_dir = Path(spec.journal_dir)
    earlier = [p for p in journals(journal_dir) if int(p.stem.split("-")[1]) < incarnation]
    acked = [(event_id, digest, seq) for op in (History.load(*earlier) if earlier else History())
             if op.status == OpStatus.OK and op.sequences is not None
             for event_id, digest, seq in zip(op.event_ids, op.digests or [None] * len(op.event_ids), op.sequences)]
    sample = random.Random(f"{spec.seed}:{incarnation}:readback").sample(acked, min(spec.readback, len(acked)))
    problems = []
    for event_id, digest, seq in sample:
        try:
            stored = await adapter.get(event_id)
        except AdapterError as exc:
            problems.append(f"get({event_id}) of an acknowledged event failed: {exc.code}")
            continue
        if stored.sequence != seq or (digest is not None and stored.digest() != digest):
            problems.append(f"get({event_id}) returned sequence {stored.sequence} digest {stored.digest()}, "
                            f"acknowledged as sequence {seq} digest {digest}")
    _write_json(journal_dir / _READBACK.format(incarnation), {"checked": len(sample), "problems": problems})


def readback_problems(journal_dir: str | os.PathLike[str]) -> tuple[int, list[str]]:
    """Events read back by id over every incarnation, and each mismatch found."""
    checked, problems = 0, []
    for path in sorted(Path(journal_dir).glob("readback-*.json")):
        document = json.loads(path.read_text())
        checked += document["checked"]
        problems.extend(f"{path.stem}: {p}" for p in document["problems"])
    return checked, problems


async def _drive(spec: WorkloadSpec, incarnation: int) -> dict[str, Any]:
    journal_dir = Path(spec.journal_dir)
    result: dict[str, Any] = {"incarnation": incarnation, "pid": os.getpid(), "opened": False, "phases": []}
    adapter = spec.adapter.create(spec.data_dir)
    started = time.monotonic()
    try:
        await adapter.open()
    except Exception as exc:
        result["open_error"] = {"type": type(exc).__name__, "code": getattr(exc, "code", None), "message": str(exc)}
        return result
    result["opened"] = True
    result["open_seconds"] = time.monotonic() - started
    _write_json(journal_dir / _OPENED.format(incarnation), {"pid": os.getpid(), "open_seconds": result["open_seconds"]})
    if spec.readback:
        await _read_back(spec, adapter, incarnation)
    history = History(journal_dir / _JOURNAL.format(incarnation), client_id=f"i{incarnation}", sync="none")
    sent = _SentLog(journal_dir / _SENT.format(incarnation)) if spec.resend_share else None
    stop_snapshots = asyncio.Event()
    snapshots = None
    if spec.snapshot_every_s is not None:
        from testkit.faults.snapshot_workload import run_snapshot_client

        snapshots = asyncio.create_task(
            run_snapshot_client(adapter, spec.journal_dir, incarnation, spec.snapshot_every_s, stop_snapshots))
    try:
        resends = _resends(spec, incarnation) if spec.resend_share else []
        if resends:
            chunks = [iter(resends[c::spec.clients]) for c in range(spec.clients)]
            tally = _PhaseTally("resend")
            first_op = len(history)
            await _run_phase(spec, adapter, history, incarnation, Phase(ops_per_client=len(resends), name="resend"),
                             tally, chunks, sent)
            _count_outcomes(history, first_op, tally)
            result["phases"].append(tally.to_dict())
        for number, phase in enumerate(spec.phases):
            payload_max = phase.payload_max_bytes or spec.payload_max_bytes
            operations = [
                _operations(spec, _event_stream(spec, incarnation * 1000 + number, c, payload_max,
                                                phase.payload_min_bytes),
                            random.Random(f"{spec.seed}:{incarnation}:{number}:{c}:ops"))
                for c in range(spec.clients)
            ]
            tally = _PhaseTally(phase.name or f"phase{number}")
            first_op = len(history)
            limits = phase.resolve_limits(spec.data_dir)
            if limits is not None:
                assert phase.ops_per_client is not None
                ready = [iter([next(ops) for _ in range(phase.ops_per_client)]) for ops in operations]
                with pressure(limits, scratch_dir=spec.journal_dir) as records:
                    tally.limit_records = [r.to_dict() for r in records]
                    await _run_phase(spec, adapter, history, incarnation, phase, tally, ready, sent)
            else:
                await _run_phase(spec, adapter, history, incarnation, phase, tally, operations, sent)
            _count_outcomes(history, first_op, tally)
            result["phases"].append(tally.to_dict())
        health = getattr(adapter, "health", None)
        if callable(health):
            result["health"] = health()
    finally:
        if snapshots is not None:
            stop_snapshots.set()
            await asyncio.gather(snapshots, return_exceptions=True)
        history.close()
        if sent is not None:
            sent.close()
        try:
            await adapter.close()
        except Exception as exc:
            result["close_error"] = f"{type(exc).__name__}: {exc}"
    return result


def run_incarnation(spec: WorkloadSpec, incarnation: int) -> dict[str, Any]:
    """Run one worker life in this process: open, run the phases, close; also written to a result file."""
    result = asyncio.run(_drive(spec, incarnation))
    _write_json(Path(spec.journal_dir) / _RESULT.format(incarnation), result)
    return result


# ------------------------------------------------------------------------------------------ the zygote


def _worker_main(spec: WorkloadSpec, incarnation: int) -> int:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        run_incarnation(spec, incarnation)
        return 0
    except BaseException:
        traceback.print_exc()
        return 1


def _serve(address: str, preload: Sequence[str]) -> None:
    """The zygote: import everything once, then fork a worker per ``spawn`` command."""
    for module in preload:
        importlib.import_module(module)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(address)
    conn = Connection(sock.detach())
    workers: set[int] = set()
    try:
        while True:
            try:
                command, *args = conn.recv()
            except EOFError:
                return
            if command == "spawn":
                spec, incarnation = args
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    conn.close()
                    os._exit(_worker_main(spec, incarnation))
                workers.add(pid)
                conn.send(pid)
            elif command == "poll":
                (pid,) = args
                info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
                conn.send(info is not None)
            elif command == "reap":
                pid, timeout = args
                conn.send(_reap(pid, timeout))
                workers.discard(pid)
            elif command == "exit":
                return
    finally:
        for pid in workers:  # never leave a worker behind, even if the caller vanished
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


def _reap(pid: int, timeout: float) -> int | None:
    deadline = time.monotonic() + timeout
    pause_s = 0.0002
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() >= deadline:
            return None
        time.sleep(pause_s)
        pause_s = min(pause_s * 2, 0.01)


def _thread_states(pid: int) -> dict[int, str]:
    """One-letter state of each thread of ``pid`` (R, S, D, T, Z...)."""
    states = {}
    with contextlib.suppress(FileNotFoundError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                with open(f"/proc/{pid}/task/{task}/stat", encoding="ascii", errors="replace") as fh:
                    stat = fh.read()
                states[int(task)] = stat[stat.rindex(")") + 2]
    return states


def import_roots(modules: Sequence[str]) -> list[str]:
    """Directories that make already-imported ``modules`` importable under the same names in a child.

    Test runners import test helpers under names that only their own import hooks resolve (pytest's
    rootdir-relative packages); the child finds them again through these roots.
    """
    roots: list[str] = []
    for name in modules:
        module = sys.modules.get(name)
        file = getattr(module, "__file__", None)
        if not file:
            continue
        path = Path(file).resolve()
        depth = name.count(".") + (1 if path.name == "__init__.py" else 0)
        root = str(path.parents[depth])
        if root not in roots:
            roots.append(root)
    return roots


@dataclass(frozen=True, slots=True)
class ForkedWorker:
    pid: int
    incarnation: int
    spawned_at: float  # time.monotonic()
    spec: WorkloadSpec


class WorkloadServer:
    """Fork server for crash cycles: ``with WorkloadServer(spec) as server: w = server.spawn(0)``.

    ``preload`` names extra modules the zygote imports before forking (the adapter's module and the
    traffic generator always are); ``wrapper`` runs the zygote under a command such as strace (see
    :class:`~testkit.faults.persistence.SyscallTrace`). Leaving the block kills every worker and the zygote.
    """

    def __init__(self, spec: WorkloadSpec, *, preload: Sequence[str] = (), wrapper: Sequence[str] = ()) -> None:
        self.spec = spec
        self._preload = tuple(preload)
        self._wrapper = tuple(wrapper)
        self._dir: Path | None = None
        self._child: ChildProcess | None = None
        self._conn: Connection | None = None
        self._unreaped: set[int] = set()

    def __enter__(self) -> WorkloadServer:
        Path(self.spec.journal_dir).mkdir(parents=True, exist_ok=True)
        self._dir = make_private_dir("workload")
        address = str(self._dir / "ctl.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(address)
            listener.listen(1)
            listener.settimeout(0.05)
            modules = [self.spec.adapter.factory.partition(":")[0], "testkit.data", *self._preload]
            env = dict(os.environ)
            roots = import_roots(modules)
            if roots:
                env["PYTHONPATH"] = os.pathsep.join([*roots, *filter(None, [env.get("PYTHONPATH")])])
            self._child = ChildProcess.python(_serve, (address, modules), env=env, wrapper=self._wrapper)
            sock = self._accept(listener)
            sock.settimeout(None)
            self._conn = Connection(sock.detach())
        except BaseException:
            self.close()
            raise
        finally:
            listener.close()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _accept(self, listener: socket.socket) -> socket.socket:
        assert self._child is not None
        deadline = time.monotonic() + _CONNECT_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                sock, _ = listener.accept()
                return sock
            except TimeoutError:
                if self._child.poll() is not None:
                    outcome = self._child.outcome()
                    error = outcome.error.traceback if outcome.error else self._child.stderr_text()[-2000:]
                    raise FaultError(f"the workload zygote exited ({outcome.returncode}) before connecting: {error}")
        raise FaultError(f"the workload zygote did not connect within {_CONNECT_TIMEOUT_S}s")

    def _ask(self, *command: Any) -> Any:
        if self._conn is None:
            raise RuntimeError("WorkloadServer is not running")
        self._conn.send(command)
        if not self._conn.poll(_CONNECT_TIMEOUT_S):
            raise FaultError(f"the workload zygote did not answer {command[0]!r}")
        return self._conn.recv()

    def spawn(self, incarnation: int, spec: WorkloadSpec | None = None) -> ForkedWorker:
        """Fork a worker running one incarnation (of ``spec``, default the server's)."""
        use = spec or self.spec
        pid = self._ask("spawn", use, incarnation)
        self._unreaped.add(pid)
        return ForkedWorker(pid, incarnation, time.monotonic(), use)

    def exited(self, worker: ForkedWorker) -> bool:
        return bool(self._ask("poll", worker.pid))

    def wait_opened(self, worker: ForkedWorker, timeout: float = 30.0) -> dict[str, Any] | None:
        """The worker's open report once its store is open, or None if it exited first."""
        path = Path(worker.spec.journal_dir) / _OPENED.format(worker.incarnation)
        deadline = time.monotonic() + timeout
        pause_s = 0.0005
        while True:
            if path.exists():
                return json.loads(path.read_text())  # type: ignore[no-any-return]
            if self.exited(worker):
                return json.loads(path.read_text()) if path.exists() else None
            if time.monotonic() >= deadline:
                raise FaultError(f"worker {worker.pid} did not open its store within {timeout}s")
            time.sleep(pause_s)
            pause_s = min(pause_s * 2, 0.005)

    def wait_writing(self, worker: ForkedWorker) -> dict[str, Any] | None:
        """The worker's open report once it has also acknowledged a write (see :meth:`wait_acknowledged`);
        None if it exited before opening. Campaigns draw a fault's random moment from here."""
        opened = self.wait_opened(worker)
        if opened is not None:
            self.wait_acknowledged(worker)
        return opened

    def wait_acknowledged(self, worker: ForkedWorker, timeout: float = FIRST_ACK_TIMEOUT_S) -> bool:
        """Wait until the worker's journal holds an acknowledged write; False if it exited or ``timeout`` passed.

        On a busy machine a fixed delay after the open can end before the incarnation wrote anything (a
        server store's first commit can take long): a crash landed then judges no write in flight."""
        journal = Path(worker.spec.journal_dir) / _JOURNAL.format(worker.incarnation)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.exited(worker):
            if journal.exists() and OK in bytes(History.load(journal).columns().status):
                return True
            time.sleep(0.005)  # polling the journal file: the worker is another process
        return False

    def join(self, worker: ForkedWorker, timeout: float = 60.0) -> int:
        """Wait for the worker to end by itself; its exit code (negative: killed by that signal)."""
        code = self._ask("reap", worker.pid, timeout)
        if code is None:
            raise FaultError(f"worker {worker.pid} still running after {timeout}s")
        self._unreaped.discard(worker.pid)
        return int(code)

    def kill9(self, worker: ForkedWorker) -> FaultRecord:
        """SIGKILL the worker and prove it by its wait status (not proven if it had exited already)."""
        clock = FaultClock()
        if worker.pid not in self._unreaped:
            raise FaultError(f"worker {worker.pid} was already reaped")
        already = self.exited(worker)
        if not already:
            os.kill(worker.pid, signal.SIGKILL)  # still unreaped: the PID is certainly our worker
        code = self.join(worker, timeout=10.0)
        proven = not already and code == -signal.SIGKILL
        detail = f"worker {worker.pid} (incarnation {worker.incarnation}) " + (
            "ended by SIGKILL" if proven else f"had already exited with {code}"
        )
        return clock.record(
            "sigkill", proven, detail, pid=worker.pid, returncode=code, alive_s=time.monotonic() - worker.spawned_at
        )

    def freeze(self, worker: ForkedWorker, *, timeout: float = 5.0) -> FaultRecord:
        """SIGSTOP the worker; proven once every thread is stopped (or inside a syscall it cannot leave).

        Freezing before a power cut makes the cut instantaneous from the worker's point of view: no
        acknowledgement can be journalled after this returns, so every recorded ``ok`` was made
        before the cut, as on a real machine, even though the shutdown ioctl itself takes a while.
        """
        clock = FaultClock()
        if worker.pid not in self._unreaped:
            raise FaultError(f"worker {worker.pid} was already reaped")
        os.kill(worker.pid, signal.SIGSTOP)  # unreaped: the PID is certainly our worker
        deadline = time.monotonic() + timeout
        states = _thread_states(worker.pid)
        while not (states and all(s in "TtDZ" for s in states.values())) and time.monotonic() < deadline:
            time.sleep(0.0002)
            states = _thread_states(worker.pid)
        proven = bool(states) and all(s in "TtDZ" for s in states.values())
        return clock.record("sigstop", proven, f"worker {worker.pid} thread states {sorted(states.values())}",
                            pid=worker.pid, states=states)

    def result(self, worker: ForkedWorker) -> dict[str, Any] | None:
        """The worker's result document, if it finished by itself."""
        path = Path(worker.spec.journal_dir) / _RESULT.format(worker.incarnation)
        return json.loads(path.read_text()) if path.exists() else None

    def close(self) -> None:
        try:
            if self._conn is not None:
                with contextlib.suppress(OSError):
                    self._conn.send(("exit",))
                self._conn.close()
                self._conn = None
            if self._child is not None:
                with contextlib.suppress(Exception):
                    self._child.wait(timeout=10.0)
                self._child.close()  # SIGKILLs the zygote's group (workers included) if still there
                self._child = None
        finally:
            if self._dir is not None:
                import shutil

                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None


# ------------------------------------------------------------------------------------------ judging input


def journals(journal_dir: str | os.PathLike[str]) -> list[Path]:
    return sorted(Path(journal_dir).glob("journal-*.jsonl"))


def load_history(journal_dir: str | os.PathLike[str]) -> History:
    """Every incarnation's journal merged into one history (calls cut short by a kill become unknown)."""
    found = journals(journal_dir)
    return History.load(*found) if found else History()


@dataclass(frozen=True, slots=True)
class Recovered:
    """What a store holds after recovery, and what it says about itself."""

    events: list[StoredEvent]
    health: dict[str, Any] | None
    open_seconds: float

    def lost_ranges(self) -> list[tuple[int, int]]:
        return [tuple(r) for r in (self.health or {}).get("lost_sequences", [])]  # type: ignore[misc]

    def voided_ranges(self) -> list[tuple[int, int]]:
        return [tuple(r) for r in (self.health or {}).get("voided_sequences", [])]  # type: ignore[misc]


async def recover_async(adapter: AdapterSpec, data_dir: str | os.PathLike[str]) -> Recovered:
    """Open the store (running its recovery), read every event, take its health, close it."""
    store = adapter.create(data_dir)
    started = time.monotonic()
    await store.open()
    try:
        open_seconds = time.monotonic() - started
        events = [event async for event in store.read_all()]
        health = getattr(store, "health", None)
        return Recovered(events, health() if callable(health) else None, open_seconds)
    finally:
        await store.close()


def recover(adapter: AdapterSpec, data_dir: str | os.PathLike[str]) -> Recovered:
    return asyncio.run(recover_async(adapter, data_dir))
