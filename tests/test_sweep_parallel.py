"""``disentkit sweep --parallel 2`` with real trainings on CPU: two runs train at the same time,
each in its own run folder with its own lock and log, and both finish as they would alone."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from disentkit.experiments.sweep import execute_local, parallel_env, plan_sweep
from disentkit.training.checkpoint import load_checkpoint

#: `disentkit train` that records when it ran, whether its run folder held its lock meanwhile,
#: and the OMP_NUM_THREADS it was given
TIMED_TRAIN = """
import json, os, sys, threading, time
from pathlib import Path
start = time.time()
from disentkit.cli import main
from disentkit.run_lock import read_lock
words = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
run_dir = Path(words["out_dir"]) / words["name"]
holders = set()
done = threading.Event()

def watch():
    while not done.is_set():
        info = read_lock(run_dir)
        if info is not None:
            holders.add(info.pid)
        time.sleep(0.02)

threading.Thread(target=watch, daemon=True).start()
code = main(["train", *sys.argv[1:]])
done.set()
(run_dir / "timed.json").write_text(json.dumps({"start": start, "end": time.time(),
    "pid": os.getpid(), "lock_holders": sorted(holders), "omp": os.environ.get("OMP_NUM_THREADS")}))
sys.exit(code)
"""

WORDS = ["imports=[toy_plugin]", "data.name=toy_bars", "model.name=toy_ae", "train.batch_size=4",
         "train.steps=10", "log.every=5", "log.progress=false", "train.num_threads=1",
         "eval.at_end=false", "eval.report_at_end=false", "seed=0:2"]


def test_parallel_two_runs_train_at_once_in_their_own_folders(tmp_path: Path, capsys) -> None:
    script = tmp_path / "timed_train.py"
    script.write_text(TIMED_TRAIN)
    out = tmp_path / "sweep"
    plan = plan_sweep(WORDS, out)
    outcome = execute_local(plan, parallel=2, train_command=[sys.executable, str(script)])
    assert list(outcome.values()) == ["finished", "finished"]
    a, b = (json.loads((out / r.name / "timed.json").read_text()) for r in plan.runs)
    assert a["pid"] != b["pid"]
    # each run's lock was held by its own process, never by the other one
    assert a["lock_holders"] == [a["pid"]] and b["lock_holders"] == [b["pid"]]
    assert a["start"] < b["end"] and b["start"] < a["end"], "the two runs did not overlap in time"
    for run, seed in zip(plan.runs, (0, 1)):
        run_dir = out / run.name
        assert json.loads((run_dir / "summary.json").read_text())["status"] == "finished"
        assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["step"] == 10
        assert f"seed={seed}" in (out / "logs" / f"{run.name}.log").read_text()
        assert not (run_dir / "run.lock").exists()  # each run released its own lock
    # the seeds really differ: two runs, not one run twice
    wa, wb = (load_checkpoint(out / r.name / "checkpoints" / "last.pt")["model"] for r in plan.runs)
    assert any(not wa[k].equal(wb[k]) for k in wa)
    # a second launch finds both finished and trains nothing
    assert set(execute_local(plan, parallel=2, train_command=[sys.executable, str(script)],
                             echo=False).values()) == {"skipped"}


def test_parallel_runs_share_the_cores_unless_told() -> None:
    assert "OMP_NUM_THREADS" not in parallel_env(1, {})
    assert int(parallel_env(4, {})["OMP_NUM_THREADS"]) >= 1
    assert parallel_env(4, {"OMP_NUM_THREADS": "3"})["OMP_NUM_THREADS"] == "3"
