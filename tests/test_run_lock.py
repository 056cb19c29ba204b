"""The run lock: live vs stale holders (dead pid, reused pid, zombie, other host, reboot),
take-over of a stale lock, heartbeat, launcher ranks, and `disentkit train` on a held run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from disentkit import run_lock
from disentkit.cli import main
from disentkit.config import load_config, save_config
from disentkit.run_lock import (
    EXIT_LOCKED,
    LOCK_NAME,
    LockInfo,
    RunLock,
    RunLockedError,
    is_launcher_rank_zero,
    lock_state,
    read_lock,
)

HAS_PROC = Path("/proc/self/stat").exists()


def _write_lock(run_dir: Path, **fields) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    info = {"host": socket.gethostname(), "pid": os.getpid(), "started": 1.0e9, **fields}
    path = run_dir / LOCK_NAME
    path.write_text(json.dumps(info))
    return path


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # reaped: the pid names no process now
    return proc.pid


def test_lock_is_held_while_running_and_removed_after(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with RunLock(run, heartbeat_s=0) as lock:
        info = read_lock(run)
        assert info is not None and info.pid == os.getpid() and info.host == socket.gethostname()
        assert lock_state(run)[0] == "live"
        with pytest.raises(RunLockedError, match=f"pid {os.getpid()}") as err:
            RunLock(run, heartbeat_s=0).acquire()
        assert "delete" in str(err.value) and "--resume" in str(err.value)
        assert lock.info is not None
    assert not (run / LOCK_NAME).exists()
    assert lock_state(run) == ("free", None)
    # released on an exception too
    with pytest.raises(RuntimeError, match="boom"), RunLock(run, heartbeat_s=0):
        raise RuntimeError("boom")
    assert not (run / LOCK_NAME).exists()


def test_disabled_lock_writes_nothing(tmp_path: Path) -> None:
    with RunLock(tmp_path / "run", enabled=False):
        assert not (tmp_path / "run").exists()


def test_dead_pid_on_this_host_is_stale_and_taken_over(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    _write_lock(run, pid=_dead_pid())
    state, info = lock_state(run)
    assert state == "stale" and info is not None
    with RunLock(run, heartbeat_s=0):
        assert read_lock(run).pid == os.getpid()
        assert lock_state(run)[0] == "live"
    assert "stale lock" in capsys.readouterr().err


@pytest.mark.skipif(not HAS_PROC, reason="process start times come from /proc")
def test_reused_pid_and_zombie_are_stale(tmp_path: Path) -> None:
    me = run_lock._proc_stat(os.getpid())
    assert me is not None
    _write_lock(tmp_path / "a", start_ticks=me[1])
    assert lock_state(tmp_path / "a")[0] == "live"
    _write_lock(tmp_path / "b", start_ticks=me[1] - 1)  # same pid, another process's start time
    assert lock_state(tmp_path / "b")[0] == "stale"
    # A child that exited but is not reaped yet still has a pid: a zombie holds nothing.
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.time() + 10
        while (run_lock._proc_stat(proc.pid) or ("?",))[0] != "Z" and time.time() < deadline:
            time.sleep(0.02)
        _write_lock(tmp_path / "c", pid=proc.pid)
        assert lock_state(tmp_path / "c")[0] == "stale"
    finally:
        proc.wait()


def test_other_host_is_judged_by_heartbeat_and_reboot_makes_stale(tmp_path: Path) -> None:
    path = _write_lock(tmp_path / "a", host="some-other-node", pid=1)
    assert lock_state(tmp_path / "a", stale_after_s=600)[0] == "live"
    old = time.time() - 601
    os.utime(path, (old, old))
    assert lock_state(tmp_path / "a", stale_after_s=600)[0] == "stale"
    if run_lock._boot_id():
        _write_lock(tmp_path / "b", boot_id="not-this-boot")
        assert lock_state(tmp_path / "b")[0] == "stale"


def test_heartbeat_refreshes_the_lock_file(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with RunLock(run, heartbeat_s=0.05):
        old = time.time() - 1000
        os.utime(run / LOCK_NAME, (old, old))
        deadline = time.time() + 5
        while (run / LOCK_NAME).stat().st_mtime < old + 500 and time.time() < deadline:
            time.sleep(0.02)
        assert (run / LOCK_NAME).stat().st_mtime > old + 500


def test_release_leaves_a_lock_another_process_took_over(tmp_path: Path) -> None:
    run = tmp_path / "run"
    lock = RunLock(run, heartbeat_s=0)
    lock.acquire()
    _write_lock(run, pid=12345, host="other", started=5.0)
    lock.release()
    assert read_lock(run).host == "other"


def test_unreadable_lock_is_judged_by_age(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_NAME).write_text("not json")
    assert read_lock(run) == LockInfo(host="", pid=0, heartbeat=(run / LOCK_NAME).stat().st_mtime)
    assert lock_state(run)[0] == "live"
    assert lock_state(run, now=time.time() + 10_000)[0] == "stale"


def test_only_the_launchers_rank_zero_takes_the_lock() -> None:
    assert is_launcher_rank_zero({})
    assert is_launcher_rank_zero({"RANK": "0", "LOCAL_RANK": "0", "SLURM_PROCID": "0"})
    for var in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK"):
        assert not is_launcher_rank_zero({var: "1"}), var


def test_train_on_a_held_run_exits_with_the_locked_status(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    run.mkdir()
    save_config(load_config("quickstart/sprites", ["train.steps=2"]), run / "config.yaml")
    with RunLock(run, heartbeat_s=0):
        assert main(["train", "--resume", str(run)]) == EXIT_LOCKED
        err = capsys.readouterr().err
        assert "being trained by another process" in err and f"pid {os.getpid()}" in err
        # a new run under the same name is refused the same way, before anything is written
        code = main(["train", "preset=quickstart/sprites", f"out_dir={tmp_path}", "name=run"])
        assert code == EXIT_LOCKED
    assert sorted(p.name for p in run.iterdir()) == [".run.lock.guard", "config.yaml"]
