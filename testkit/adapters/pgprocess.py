"""An embedded PostgreSQL server (binaries from the ``pgserver`` wheel) whose life is bound to its owner.

Chaos campaigns SIGKILL the process that uses a store and cut power under it; for a server-based
store that only means something if the server dies at the same moment. So the server is started
by the owning thread through ``setpriv --pdeathsig KILL`` (the kernel kills the postmaster when that
thread dies) in its own process group; the backends left behind notice the postmaster's death and
exit without writing anything, and the next :meth:`PgServer.start` on the same data directory kills
whatever of that group is still alive, by the process-group id recorded in ``postmaster.pid``.

A fresh cluster is a copy of one ``initdb`` template per machine (initdb takes seconds, a copy a
fraction), synced with ``syncfs`` before first use so a power cut never finds half a cluster.

As root, the server runs as the ``pgserver`` account (postgres refuses root) with one capability,
``CAP_DAC_READ_SEARCH``: it opens its files by absolute path (``pg_control`` at every checkpoint and
crash recovery), and the directories above the cluster are not ours to keep open to other accounts:
pytest resets ``/tmp/pytest-of-root`` to 0700 whenever any session starts, which made a restarted
server PANIC with "could not open file .../global/pg_control: Permission denied".
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import subprocess
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

from testkit.adapters.base import AdapterError

__all__ = ["PgServer", "pg_binaries"]

_SYSTEM_USER = "pgserver"  # the account pgserver itself creates when run as root (postgres refuses root)
_READY_TIMEOUT_S = 120.0
_STOP_TIMEOUT_S = 30.0
_MAX_SOCKET_DIR = 90  # sun_path holds 108 bytes, ".s.PGSQL.5432" takes 14
_SERVER_SETTINGS = {  # small enough for a 64 MiB loop filesystem and a shared 2-core machine
    "listen_addresses": "",
    "shared_buffers": "16MB",
    "max_connections": "10",
    "min_wal_size": "4MB",
    "max_wal_size": "16MB",
    "wal_keep_size": "0",
    "log_min_messages": "warning",
    # Segments in the data directory, not /dev/shm: a SIGKILLed server cannot remove its own, and the next
    # start clears pg_dynshmem, so hundreds of chaos kills leave nothing behind in memory.
    "dynamic_shared_memory_type": "mmap",
}


def pg_binaries() -> Path:
    """The ``bin`` directory of the PostgreSQL build shipped inside the ``pgserver`` wheel."""
    try:
        with warnings.catch_warnings():  # pgserver asks platformdirs for a runtime dir at import; we never use it
            warnings.simplefilter("ignore")
            from pgserver._commands import POSTGRES_BIN_PATH
    except ImportError as exc:
        raise AdapterError("PostgreSQL adapters need the pgserver package (pip install "
                           "'lighthouse-testkit[postgres]')", code="missing_dependency") from exc
    return Path(POSTGRES_BIN_PATH)


def _run_as(owner: tuple[int, int] | None) -> dict[str, object]:
    if owner is None:
        return {}
    return {"user": owner[0], "group": owner[1], "extra_groups": []}


def _server_credentials(owner: tuple[int, int] | None) -> list[str]:
    """``setpriv`` options that make the server ``owner`` and let it reach its cluster through any parent."""
    if owner is None:
        return []
    return ["--reuid", str(owner[0]), "--regid", str(owner[1]), "--clear-groups",
            "--inh-caps", "+dac_read_search", "--ambient-caps", "+dac_read_search"]


def _server_owner() -> tuple[int, int] | None:
    """(uid, gid) to run postgres as when we are root; None when we are not."""
    if os.geteuid() != 0:
        return None
    import pwd

    binaries = pg_binaries()
    from pgserver.utils import ensure_folder_permissions, ensure_user_exists

    entry = ensure_user_exists(_SYSTEM_USER)
    assert entry is not None
    ensure_folder_permissions(binaries, 0o555)
    ensure_folder_permissions(binaries.parent / "lib", 0o444)
    return entry.pw_uid, pwd.getpwnam(_SYSTEM_USER).pw_gid


def _allow_traversal(path: Path) -> None:
    """Let the server's account reach ``path`` (what pgserver does too): g+x,o+x on it and every parent."""
    resolved = path.resolve()
    for parent in (resolved, *resolved.parents):
        mode = parent.stat().st_mode
        if mode & 0o011 != 0o011:
            parent.chmod(mode | 0o011)


def _chown_tree(root: Path, owner: tuple[int, int]) -> None:
    os.chown(root, *owner)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            os.chown(os.path.join(dirpath, name), *owner, follow_symlinks=False)


def _template(owner: tuple[int, int] | None) -> Path:
    """A cluster made by ``initdb`` once per machine and account, shared read-only by every copy."""
    uid = owner[0] if owner else os.geteuid()
    version = (pg_binaries() / "postgres").stat().st_mtime_ns
    template = Path(tempfile.gettempdir()) / f"testkit-pg-template-{uid}-{version}"
    if (template / "PG_VERSION").exists():
        return template
    staging = Path(tempfile.mkdtemp(prefix="testkit-pg-initdb-"))
    try:
        cluster = staging / "pgdata"
        cluster.mkdir(mode=0o700)
        if owner is not None:
            _allow_traversal(cluster)
            _chown_tree(staging, owner)
        subprocess.run(
            [str(pg_binaries() / "initdb"), "-D", str(cluster), "--auth=trust", "--encoding=utf8", "-U", "postgres",
             "--wal-segsize=1", "--no-instructions", "--no-sync"],
            check=True, capture_output=True, text=True, **_run_as(owner),  # type: ignore[arg-type]
        )
        with contextlib.suppress(OSError):  # another process won the race: use its template
            os.rename(cluster, template)
    except subprocess.CalledProcessError as exc:
        raise AdapterError(f"initdb failed: {exc.stderr.strip()[-500:]}", code="store_unavailable") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return template


def _copy_cluster(template: Path, target: Path, owner: tuple[int, int] | None) -> None:
    """Copy the template to ``target`` (owned by ``owner``), failing at the first error with its errno: a full
    or read-only filesystem must be told apart (``shutil.copytree`` gathers every file's error in one)."""
    target.mkdir(mode=0o700)
    for root, dirnames, filenames in os.walk(template):
        here = target / Path(root).relative_to(template)
        for name in dirnames:
            (here / name).mkdir(mode=0o700)
        for name in filenames:
            source = Path(root) / name
            if source.is_symlink():
                (here / name).symlink_to(os.readlink(source))
            else:
                shutil.copy2(source, here / name)
        if owner is not None:
            for name in (".", *dirnames, *filenames):
                os.chown(here / name, *owner, follow_symlinks=False)


def _unavailable(exc: OSError, doing: str) -> AdapterError:
    """The typed error for a filesystem refusal while starting: out of space is retryable once space is freed."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return AdapterError(f"postgres cannot {doing}: {exc}", code="resource_exhausted", retryable=True)
    if exc.errno == errno.EROFS:
        return AdapterError(f"postgres cannot {doing}: {exc}", code="store_read_only", retryable=True)
    return AdapterError(f"postgres cannot {doing}: {exc}", code="store_unavailable")


def _syncfs(path: Path) -> None:
    subprocess.run(["sync", "-f", str(path)], check=True)


def _group_members(pgid: int, cluster_dir: str) -> list[int]:
    """Live postgres processes in process group ``pgid`` working in ``cluster_dir`` (a server we started)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                stat = fh.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1: stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        if comm.startswith("postgres") and fields[0] != "Z" and int(fields[2]) == pgid:
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{entry}/cwd") == cluster_dir:
                    members.append(int(entry))
    return members


def _kill_group(pgid: int, cluster_dir: Path, timeout: float) -> None:
    """SIGKILL every postgres process of group ``pgid`` on ``cluster_dir`` and wait until none is left."""
    where = str(cluster_dir.resolve())
    deadline = time.monotonic() + timeout
    pause = 0.001
    while members := _group_members(pgid, where):
        for pid in members:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            raise AdapterError(f"postgres processes {members} of a previous server would not die",
                               code="store_locked", retryable=True)
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


class PgServer:
    """One postgres server on ``cluster_dir``, started and stopped by the thread that owns it."""

    def __init__(self, cluster_dir: Path, log_path: Path, settings: dict[str, str]) -> None:
        self.cluster_dir = cluster_dir
        self.log_path = log_path
        self.settings = {**_SERVER_SETTINGS, **settings}
        self._process: subprocess.Popen[bytes] | None = None
        self._socket_dir: Path | None = None
        self._own_socket_dir = False

    @property
    def port(self) -> int:
        """The port in the name of the Unix socket (``.s.PGSQL.PORT``), and on 127.0.0.1 when it listens there."""
        return int(self.settings.get("port", "5432"))

    @property
    def socket_dir(self) -> str:
        if self._socket_dir is None:
            raise AdapterError("postgres is not running", code="store_closed")
        return str(self._socket_dir)

    def _ensure_cluster(self, owner: tuple[int, int] | None) -> None:
        if (self.cluster_dir / "PG_VERSION").exists():
            if owner is not None and self.cluster_dir.stat().st_uid != owner[0]:
                _chown_tree(self.cluster_dir, owner)  # copied by root (a backup restored): postgres refuses it
            return
        staging = self.cluster_dir.with_name(self.cluster_dir.name + ".copying")
        shutil.rmtree(staging, ignore_errors=True)  # a copy cut short by a kill
        template = _template(owner)
        try:
            _copy_cluster(template, staging, owner)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)  # never leave half a cluster taking the space
            raise
        _syncfs(staging)
        os.rename(staging, self.cluster_dir)
        _syncfs(self.cluster_dir.parent)

    def _reap_previous(self) -> None:
        """Kill what is left of a server killed with its owner (its backends hold the shared memory), then
        drop its lock files: postgres would take the dead postmaster's PID, still a zombie until init reaps
        it (or already reused), for a live server and refuse to start."""
        lock = self.cluster_dir / "postmaster.pid"
        try:
            pid = int(lock.read_text().split("\n", 1)[0])
        except (OSError, ValueError, IndexError):
            return
        _kill_group(pid, self.cluster_dir, _STOP_TIMEOUT_S)
        if not _group_members(pid, str(self.cluster_dir.resolve())):
            for stale in (lock, *self.cluster_dir.glob(".s.PGSQL.*")):  # its socket and socket lock too
                stale.unlink(missing_ok=True)

    def start(self) -> None:
        """Create the cluster if there is none, clear what a killed server left, and start the postmaster."""
        owner = _server_owner()
        try:
            self.cluster_dir.parent.mkdir(parents=True, exist_ok=True)
            self._ensure_cluster(owner)
            self._reap_previous()
        except OSError as exc:
            raise _unavailable(exc, "prepare its cluster") from exc
        if len(str(self.cluster_dir.resolve())) <= _MAX_SOCKET_DIR:
            self._socket_dir, self._own_socket_dir = self.cluster_dir.resolve(), False
        else:
            self._socket_dir, self._own_socket_dir = Path(tempfile.mkdtemp(prefix="tk-pg-")), True
            if owner is not None:
                os.chown(self._socket_dir, *owner)
        command: Sequence[str] = [
            "setpriv", *_server_credentials(owner), "--pdeathsig", "KILL", "--", str(pg_binaries() / "postgres"),
            "-D", str(self.cluster_dir), "-k", str(self._socket_dir),
            *(arg for key, value in self.settings.items() for arg in ("-c", f"{key}={value}")),
        ]
        try:
            log = open(self.log_path, "ab")
        except OSError as exc:
            raise _unavailable(exc, "open its log") from exc
        with log:
            self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                             start_new_session=True)

    def exited(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def running(self) -> bool:
        """Started and not exited (False too after a start that failed)."""
        return self._process is not None and self._process.poll() is None

    def log_tail(self, limit: int = 800) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-limit:]
        return ""

    def start_failure(self, detail: str) -> AdapterError:
        """The typed error for a server that did not come up: its log's last lines say why (a full or read-only
        filesystem, where it could not even write ``postmaster.pid``, is retryable once the condition clears)."""
        tail = self.log_tail()
        last = tail.rstrip().rsplit("\n", 1)[-1]
        message = f"postgres did not start (exit {self.exited()}): {detail}; log: {tail}"
        if "No space left on device" in last or "Disk quota exceeded" in last:
            return AdapterError(message, code="resource_exhausted", retryable=True)
        if "Read-only file system" in last:
            return AdapterError(message, code="store_read_only", retryable=True)
        return AdapterError(message, code="store_unavailable")

    def ready_deadline(self) -> float:
        return time.monotonic() + _READY_TIMEOUT_S

    def stop(self) -> None:
        """Fast shutdown (a checkpoint, then exit); SIGKILL to the group if it does not finish in time."""
        process, self._process = self._process, None
        try:
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(timeout=_STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    _kill_group(process.pid, self.cluster_dir, _STOP_TIMEOUT_S)
                    process.wait()
            if process is not None:
                _kill_group(process.pid, self.cluster_dir, _STOP_TIMEOUT_S)  # backends that outlived a crashed postmaster
        finally:
            if self._own_socket_dir and self._socket_dir is not None:
                shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None
