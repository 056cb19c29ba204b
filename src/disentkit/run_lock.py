"""The run lock: tells a run being trained in some process from one whose process died.

``disentkit train`` (and ``disentkit.train``) takes ``RUN_DIR/run.lock`` before training and
keeps it through the evaluation and report at the end; it is removed when the process ends the
run in any ordinary way (finished, interrupted by SIGTERM/SIGUSR1, an exception). A process
killed outright (SIGKILL, out of memory, a lost node) leaves the file behind, so the file alone
does not say the run is alive. The lock therefore records who holds it:

* ``host`` (hostname) and ``boot_id`` (Linux: ``/proc/sys/kernel/random/boot_id``; a reboot
  makes every older lock of that host stale),
* ``pid`` and the process's start time in clock ticks (``/proc/PID/stat``, field 22), so a pid
  reused by an unrelated process is not taken for the trainer,
* a heartbeat: the holder touches the file every :data:`HEARTBEAT_S` seconds.

:func:`lock_state` judges a lock ``live`` or ``stale``: on the same host by whether that process
still exists (not a zombie, same start time); from another host, where pids cannot be checked,
by the heartbeat, stale after :data:`STALE_AFTER_S` seconds without one. ``disentkit sweep``
skips runs with a live lock and resumes those with a stale one; a second trainer on a live
lock fails with :class:`RunLockedError` (CLI exit status :data:`EXIT_LOCKED`).

Taking and breaking the lock happen under an exclusive ``flock`` of ``RUN_DIR/.run.lock.guard``
(where ``fcntl`` exists), so two processes that find the same stale lock cannot both take over.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "EXIT_LOCKED",
    "HEARTBEAT_S",
    "LOCK_NAME",
    "STALE_AFTER_S",
    "LockInfo",
    "RunLock",
    "RunLockedError",
    "is_launcher_rank_zero",
    "lock_state",
    "read_lock",
]

LOCK_NAME = "run.lock"
_GUARD_NAME = ".run.lock.guard"
#: seconds between the holder's touches of the lock file
HEARTBEAT_S = 30.0
#: a lock from another host whose heartbeat is older than this counts as stale
STALE_AFTER_S = 600.0
#: exit status of ``disentkit train`` when another process holds the run (sysexits EX_TEMPFAIL)
EXIT_LOCKED = 75

# Launchers' rank variables (torchrun, Fabric's own launcher, SLURM srun, MPI): only the process
# that is rank 0 in all of them takes the lock; the other ranks of a DDP run train under it.
_RANK_VARS = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID",
              "OMPI_COMM_WORLD_RANK", "PMI_RANK")


class RunLockedError(RuntimeError):
    """Another live process holds the run directory."""


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in ticks) of a process from /proc, or None where unreadable."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after the last ')'.
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[19])


def _pid_alive(pid: int, start_ticks: int | None) -> bool:
    """Whether ``pid`` is a running (not zombie) process that started at ``start_ticks``."""
    if pid <= 0:
        return False
    stat = _proc_stat(pid)
    if stat is not None:
        state, ticks = stat
        if state in ("Z", "X"):
            return False
        return start_ticks is None or ticks == start_ticks
    if Path("/proc/self/stat").exists():
        return False  # /proc works here and has no such process
    try:  # no /proc (macOS): signal 0 tests existence only
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class LockInfo:
    """What a lock file records about its holder."""

    host: str
    pid: int
    boot_id: str = ""
    start_ticks: int | None = None
    started: float = 0.0
    command: str = ""
    #: last heartbeat (the file's modification time), filled in by :func:`read_lock`
    heartbeat: float = 0.0

    @classmethod
    def of_this_process(cls) -> LockInfo:
        stat = _proc_stat(os.getpid())
        return cls(
            host=socket.gethostname(), pid=os.getpid(), boot_id=_boot_id(),
            start_ticks=stat[1] if stat else None, started=time.time(),
            command=" ".join(sys.argv)[:500],
        )

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started)) if self.started \
            else "unknown time"
        return f"host {self.host}, pid {self.pid}, since {since}"


def read_lock(run_dir: str | Path) -> LockInfo | None:
    """The lock of ``run_dir``, or None when there is none. An unreadable or foreign file is
    returned as a holder with pid 0 (judged by its age only)."""
    path = Path(run_dir) / LOCK_NAME
    try:
        text = path.read_text()
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
        fields = {k: data[k] for k in LockInfo.__dataclass_fields__ if k in data and k != "heartbeat"}
        info = LockInfo(**fields)
    except (json.JSONDecodeError, TypeError, KeyError):
        info = LockInfo(host="", pid=0)
    info.heartbeat = mtime
    return info


def lock_state(
    run_dir: str | Path, stale_after_s: float = STALE_AFTER_S, now: float | None = None,
) -> tuple[Literal["free", "live", "stale"], LockInfo | None]:
    """Judge the lock of ``run_dir``: ``free`` (no lock), ``live`` or ``stale`` (see module doc)."""
    info = read_lock(run_dir)
    if info is None:
        return "free", None
    now = time.time() if now is None else now
    same_host = info.host == socket.gethostname()
    if same_host and info.pid > 0:
        if info.boot_id and _boot_id() and info.boot_id != _boot_id():
            return "stale", info  # the machine rebooted since
        return ("live" if _pid_alive(info.pid, info.start_ticks) else "stale"), info
    return ("live" if now - info.heartbeat < stale_after_s else "stale"), info


@contextlib.contextmanager
def _guard(run_dir: Path) -> Iterator[None]:
    """Exclusive flock around the check-break-take sequence (no-op without fcntl)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    fd = os.open(run_dir / _GUARD_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the flock


class RunLock:
    """Hold ``RUN_DIR/run.lock`` while a run trains and evaluates.

        with RunLock(run_dir):
            ...   # train, evaluate, report

    Raises :class:`RunLockedError` when a live process holds the run; a stale lock is broken
    (and said so on stderr). ``enabled=False`` makes it a no-op (the non-zero ranks of a DDP
    run).
    """

    def __init__(self, run_dir: str | Path, enabled: bool = True, heartbeat_s: float = HEARTBEAT_S,
                 stale_after_s: float = STALE_AFTER_S) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.enabled = enabled
        self.heartbeat_s = heartbeat_s
        self.stale_after_s = stale_after_s
        self.info: LockInfo | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> None:
        if not self.enabled:
            return
        from disentkit.training.checkpoint import write_text_atomic  # imports torch: only when taken

        self.run_dir.mkdir(parents=True, exist_ok=True)
        info = LockInfo.of_this_process()
        payload = json.dumps({k: v for k, v in asdict(info).items() if k != "heartbeat"}, indent=2)
        with _guard(self.run_dir):
            state, holder = lock_state(self.run_dir, self.stale_after_s)
            if state == "live":
                assert holder is not None
                raise RunLockedError(
                    f"{self.run_dir} is being trained by another process ({holder.describe()}); "
                    f"wait for it to end, or, if that process is gone, delete {self.path} and "
                    "resume with `disentkit train --resume RUN_DIR`"
                )
            if state == "stale":
                assert holder is not None
                print(f"note: breaking the stale lock of {self.run_dir} ({holder.describe()}: "
                      "that process is gone)", file=sys.stderr)
            # Written beside the lock, then renamed over it: the lock is never seen half-written.
            write_text_atomic(self.path, payload)
        self.info = info
        if self.heartbeat_s > 0:
            self._thread = threading.Thread(target=self._beat, name="disentkit-run-lock", daemon=True)
            self._thread.start()

    def _owned(self) -> bool:
        holder = read_lock(self.run_dir)
        return (self.info is not None and holder is not None and holder.pid == self.info.pid
                and holder.host == self.info.host and holder.started == self.info.started)

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def release(self) -> None:
        if not self.enabled or self.info is None:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with _guard(self.run_dir):
            if self._owned():  # never remove a lock someone else took over
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
        self.info = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def is_launcher_rank_zero(environ: dict[str, str] | None = None) -> bool:
    """Whether this process is rank 0 for every launcher variable present (before Fabric has
    set up the process group, the environment is all there is to go by)."""
    environ = dict(os.environ) if environ is None else environ
    for var in _RANK_VARS:
        value = environ.get(var, "").strip()
        if value and value != "0":
            return False
    return True
