"""Sweep expansion (grid x seeds, numbering, ranges, comma lists), skip/resume, executors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from disentkit.config import ConfigError
from disentkit.experiments.sweep import (
    execute_local,
    expand,
    parse_sweep_args,
    plan_sweep,
    run_state,
    run_status,
    submit_submitit,
    train_argv,
)

# A stand-in for `disentkit train`: records its argv, writes a finished run directory.
FAKE_TRAIN = r'''
import json, sys
from pathlib import Path
args = sys.argv[1:]
if args[0] == "--resume":
    run = Path(args[1])
else:
    kv = dict(a.split("=", 1) for a in args)
    run = Path(kv["out_dir"]) / kv["name"]
    run.mkdir(parents=True, exist_ok=True)
    if kv.get("model.beta") == "13":
        sys.exit(3)
calls = run / "calls.jsonl"
with open(calls, "a") as f:
    f.write(json.dumps(args) + "\n")
(run / "summary.json").write_text(json.dumps({"status": "finished", "step": 1}))
print("trained", run)
'''


@pytest.fixture()
def fake_train(tmp_path: Path) -> list[str]:
    script = tmp_path / "fake_train.py"
    script.write_text(FAKE_TRAIN)
    return [sys.executable, str(script)]


def test_parse_ranges_lists_and_fixed() -> None:
    preset, axes, fixed = parse_sweep_args(
        ["preset=betavae/dsprites", "model.beta=1,2,4,6", "seed=0:10", "train.steps=100",
         "optim.betas=[0.9,0.99],[0.5,0.9]", "eval.seed=2:7:2"]
    )
    assert preset == "betavae/dsprites"
    assert fixed == ["train.steps=100"]
    by_key = {a.key: a for a in axes}
    assert by_key["model.beta"].values == [1, 2, 4, 6]
    assert by_key["seed"].values == list(range(10))
    assert by_key["optim.betas"].values == [[0.9, 0.99], [0.5, 0.9]]
    assert by_key["eval.seed"].values == [2, 4, 6]
    single = parse_sweep_args(["optim.betas=[0.5,0.9]"])
    assert single[1] == [] and single[2] == ["optim.betas=[0.5,0.9]"]
    for bad in (["seed"], ["seed=5:5"], ["model.beta=1,,2"], ["seed=1", "seed=2"]):
        with pytest.raises(ConfigError):
            parse_sweep_args(bad)


def test_expand_is_grid_times_seeds_last_axis_fastest() -> None:
    preset, axes, fixed = parse_sweep_args(
        ["preset=betavae/smoke", "model.beta=1,4", "seed=0:3", "train.steps=5"])
    runs = expand(axes, fixed, preset)
    assert len(runs) == 2 * 3
    assert [r.index for r in runs] == list(range(6))
    assert [r.name for r in runs[:4]] == [
        "000-beta=1-seed=0", "001-beta=1-seed=1", "002-beta=1-seed=2", "003-beta=4-seed=0"]
    assert runs[4].overrides == ["preset=betavae/smoke", "train.steps=5", "model.beta=4", "seed=1"]
    assert runs[4].params == {"model.beta": 4, "seed": 1}
    assert len({r.name for r in runs}) == 6
    # names stay valid folder names for values with slashes and brackets
    _, axes2, _ = parse_sweep_args(["preset=betavae/smoke,vae/smoke"])
    assert [r.name for r in expand(axes2, [])] == ["000-preset=betavae-smoke", "001-preset=vae-smoke"]


def test_plan_validates_configs_and_rejects_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key"):
        plan_sweep(["preset=betavae/smoke", "model.betta=1,2"], tmp_path)
    with pytest.raises(ConfigError, match="sets each run's name"):
        plan_sweep(["preset=betavae/smoke", "name=x"], tmp_path)


def test_run_state(tmp_path: Path) -> None:
    run = tmp_path / "r"
    assert run_state(run) == "new"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.pt").write_bytes(b"x")
    assert run_state(run) == "resume"
    (run / "summary.json").write_text(json.dumps({"status": "failed"}))
    assert run_state(run) == "resume"
    (run / "summary.json").write_text(json.dumps({"status": "finished"}))
    assert run_state(run) == "finished"


def test_execute_local_runs_skips_and_resumes(tmp_path: Path, fake_train: list[str]) -> None:
    out = tmp_path / "sweep"
    plan = plan_sweep(["preset=betavae/smoke", "model.beta=1,2", "seed=0:2"], out)
    # run 1 finished earlier, run 2 was interrupted after a checkpoint
    done = out / plan.runs[1].name
    done.mkdir(parents=True)
    (done / "summary.json").write_text(json.dumps({"status": "finished"}))
    broken = out / plan.runs[2].name
    (broken / "checkpoints").mkdir(parents=True)
    (broken / "checkpoints" / "last.pt").write_bytes(b"x")
    (broken / "summary.json").write_text(json.dumps({"status": "running", "step": 7}))

    outcome = execute_local(plan, parallel=2, train_command=fake_train, echo=False)
    assert outcome == {plan.runs[0].name: "finished", plan.runs[1].name: "skipped",
                       plan.runs[2].name: "finished", plan.runs[3].name: "finished"}
    assert not (done / "calls.jsonl").exists()
    assert json.loads((broken / "calls.jsonl").read_text()) == ["--resume", str(broken)]
    first = json.loads((out / plan.runs[0].name / "calls.jsonl").read_text())
    assert first == ["preset=betavae/smoke", "model.beta=1", "seed=0",
                     f"name={plan.runs[0].name}", f"out_dir={out}"]
    assert "eval.at_end=false" not in " ".join(first)
    manifest = json.loads((out / "sweep.json").read_text())
    assert [r["name"] for r in manifest["runs"]] == [r.name for r in plan.runs]
    assert manifest["axes"] == {"model.beta": ["1", "2"], "seed": ["0", "1"]}
    assert (out / "logs" / f"{plan.runs[0].name}.log").read_text().count("trained") == 1
    # everything finished: a second launch runs nothing
    again = execute_local(plan, train_command=fake_train, echo=False)
    assert set(again.values()) == {"skipped"}
    # a different grid in the same folder is refused
    other = plan_sweep(["preset=betavae/smoke", "model.beta=1,3"], out)
    with pytest.raises(ConfigError, match="different sweep"):
        other.write_manifest()


def test_failed_run_is_reported_and_others_continue(tmp_path: Path, fake_train: list[str]) -> None:
    plan = plan_sweep(["preset=betavae/smoke", "model.beta=13,2"], tmp_path / "s")
    outcome = execute_local(plan, train_command=fake_train, echo=False)
    assert outcome[plan.runs[0].name] == "failed (exit 3)"
    assert outcome[plan.runs[1].name] == "finished"
    assert train_argv(plan, plan.runs[1], fake_train) is None


def test_submitit_local_executor_runs_the_array(tmp_path: Path, fake_train: list[str]) -> None:
    plan = plan_sweep(["preset=betavae/smoke", "seed=0:2"], tmp_path / "s")
    jobs = submit_submitit(plan, cluster="local", time_min=5, gpus_per_node=0, cpus_per_task=1,
                           train_command=fake_train, wait=True)
    assert len(jobs) == 2
    assert [job.result() for job in jobs] == [0, 0]
    for run in plan.runs:
        assert run_state(plan.run_dir(run)) == "finished"
    submitted = json.loads((tmp_path / "s" / "submitted.json").read_text())
    assert submitted[0]["cluster"] == "local" and len(submitted[0]["jobs"]) == 2
    assert submit_submitit(plan, cluster="local", train_command=fake_train) == []


# ---- run lock: a run held by a live process vs one whose process died -------------------------
def _dead_lock(run_dir: Path) -> None:
    """A lock left by a process that was killed (its pid no longer exists)."""
    import os
    import socket
    import subprocess

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "run.lock").write_text(json.dumps(
        {"host": socket.gethostname(), "pid": proc.pid, "started": 1.0e9}))
    assert os.path.exists(run_dir / "run.lock")


def test_live_lock_is_skipped_and_dead_lock_resumed(tmp_path: Path, fake_train: list[str], capsys) -> None:
    from disentkit.run_lock import RunLock

    out = tmp_path / "sweep"
    plan = plan_sweep(["preset=betavae/smoke", "seed=0:3"], out)
    held, crashed, fresh = (plan.run_dir(r) for r in plan.runs)
    (held / "checkpoints").mkdir(parents=True)
    (held / "checkpoints" / "last.pt").write_bytes(b"x")
    (held / "summary.json").write_text(json.dumps({"status": "running", "step": 3}))
    (crashed / "checkpoints").mkdir(parents=True)
    (crashed / "checkpoints" / "last.pt").write_bytes(b"x")
    (crashed / "summary.json").write_text(json.dumps({"status": "running", "step": 5}))
    _dead_lock(crashed)
    _dead_lock(fresh)  # killed before its first checkpoint: starts again from scratch
    with RunLock(held, heartbeat_s=0):
        status = run_status(held)
        assert status.state == "running" and "training in another process" in status.detail
        assert run_status(crashed).state == "resume" and "died" in run_status(crashed).detail
        assert run_status(fresh).state == "new"
        assert train_argv(plan, plan.runs[0], fake_train) is None
        outcome = execute_local(plan, train_command=fake_train, echo=True)
        assert outcome == {held.name: "running elsewhere", crashed.name: "finished",
                           fresh.name: "finished"}
        assert "training in another process" in capsys.readouterr().out
        assert not (held / "calls.jsonl").exists()
        assert json.loads((crashed / "calls.jsonl").read_text()) == ["--resume", str(crashed)]
        assert json.loads((fresh / "calls.jsonl").read_text())[-2] == f"name={fresh.name}"
        # submitit path: the held run is not submitted
        assert [j for j in submit_submitit(plan, cluster="debug", train_command=fake_train)] == []
    # once the other process ends, the next launch resumes the run
    assert execute_local(plan, train_command=fake_train, echo=False)[held.name] == "finished"
    assert json.loads((held / "calls.jsonl").read_text()) == ["--resume", str(held)]


def test_trained_run_without_its_evaluation_is_resumed(tmp_path: Path) -> None:
    import os

    from disentkit.config import load_config, save_config

    run = tmp_path / "r"
    (run / "checkpoints").mkdir(parents=True)
    save_config(load_config("quickstart/sprites"), run / "config.yaml")  # eval.at_end, report_at_end
    (run / "checkpoints" / "last.pt").write_bytes(b"x")
    (run / "summary.json").write_text(json.dumps({"status": "finished", "step": 3}))
    status = run_status(run)
    assert status.state == "resume" and "results.json and report.html missing" in status.detail
    (run / "results.json").write_text("{}")
    (run / "report.html").write_text("<html></html>")
    assert run_state(run) == "finished"
    # results older than the final checkpoint belong to an earlier, shorter training
    old = (run / "checkpoints" / "last.pt").stat().st_mtime - 100
    os.utime(run / "results.json", (old, old))
    assert run_status(run).detail.startswith("trained, results.json missing")
    # an evaluation skipped for data without ground truth is not owed
    (run / "summary.json").write_text(json.dumps(
        {"status": "finished", "step": 3, "evaluation": "skipped: no ground truth"}))
    assert run_state(run) == "finished"
    # without the report the config asks for, it is not finished either
    (run / "report.html").unlink()
    assert run_state(run) == "resume"


def test_exit_status_of_a_run_taken_meanwhile_is_not_a_failure(tmp_path: Path) -> None:
    script = tmp_path / "locked.py"
    script.write_text("import sys; sys.exit(75)\n")
    plan = plan_sweep(["preset=betavae/smoke", "seed=0:2"], tmp_path / "s")
    outcome = execute_local(plan, train_command=[sys.executable, str(script)], echo=False)
    assert set(outcome.values()) == {"running elsewhere"}


def test_killed_training_leaves_a_stale_lock_the_sweep_resumes(tmp_path: Path) -> None:
    """A real `disentkit train` holds its run's lock (live); SIGKILL leaves the file, now stale."""
    import signal
    import subprocess
    import time

    from disentkit.run_lock import lock_state, read_lock

    out = tmp_path / "sweep"
    words = ["imports=[toy_plugin]", "data.name=toy_bars", "model.name=toy_ae", "train.steps=100000",
             "train.batch_size=4", "train.checkpoint_every=5", "log.progress=false",
             "train.num_threads=1", "eval.at_end=false", "eval.report_at_end=false"]
    plan = plan_sweep(words, out)
    run = plan.runs[0]
    argv = train_argv(plan, run)
    assert argv is not None
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run_dir = plan.run_dir(run)
    try:
        deadline = time.time() + 60
        while not (run_dir / "checkpoints" / "last.pt").exists() and time.time() < deadline:
            assert proc.poll() is None, "training ended early"
            time.sleep(0.05)
        assert read_lock(run_dir).pid == proc.pid
        status = run_status(run_dir)
        assert status.state == "running" and f"pid {proc.pid}" in status.detail
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert lock_state(run_dir)[0] == "stale"
    status = run_status(run_dir)
    assert status.state == "resume" and "died" in status.detail
    assert train_argv(plan, run) == [sys.executable, "-m", "disentkit", "train", "--resume", str(run_dir),
                                     "imports=[toy_plugin]"]


def test_sweep_command_dry_run_and_run(tmp_path: Path, fake_train: list[str], monkeypatch, capsys) -> None:
    from disentkit.cli import main
    from disentkit.experiments import sweep as sweep_module
    from disentkit.run_lock import RunLock

    monkeypatch.setattr(sweep_module, "default_train_command", lambda: list(fake_train))
    out = tmp_path / "s"
    words = ["sweep", "preset=betavae/smoke", "model.beta=1,2", "--out", str(out)]
    assert main([*words, "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "sweep: 2 runs" in text and "[1] 001-beta=2  new  preset=betavae/smoke model.beta=2" in text
    held = out / "001-beta=2"
    with RunLock(held, heartbeat_s=0):
        assert main([*words, "--dry-run"]) == 0
        assert "running: training in another process (host" in capsys.readouterr().out
        assert main(words) == 0
        text = capsys.readouterr().out
        summary = json.loads(text[text.index("{\n"):])
        assert summary == {"runs": 2, "failed": {}, "running_elsewhere": ["001-beta=2"]}
    assert (out / "000-beta=1" / "calls.jsonl").exists() and not (held / "calls.jsonl").exists()
    assert main(words) == 0
    assert "[1] 001-beta=2: starting" in capsys.readouterr().out
    assert main(["sweep", "preset=betavae/smoke", "model.beta=13", "--out", str(tmp_path / "f")]) == 1


def test_slurm_executor_without_submitit_says_how_to_install(tmp_path: Path, monkeypatch, capsys) -> None:
    from disentkit.cli import main

    monkeypatch.setitem(sys.modules, "submitit", None)  # import fails as if not installed
    code = main(["sweep", "preset=betavae/smoke", "seed=0:2", "--out", str(tmp_path / "s"),
                 "--executor", "slurm"])
    assert code == 2 and "pip install 'disentkit[slurm]'" in capsys.readouterr().err


def test_slurm_executor_without_srun_is_one_line_and_writes_nothing(tmp_path: Path, monkeypatch,
                                                                    capsys) -> None:
    from disentkit.cli import main

    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))  # neither srun nor sbatch to be found
    out = tmp_path / "s"
    code = main(["sweep", "preset=betavae/smoke", "seed=0:2", "--out", str(out), "--executor", "slurm"])
    error_lines = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert code == 2 and len(error_lines) == 1
    assert "srun and sbatch" in error_lines[0] and "--executor local" in error_lines[0]
    assert not (out / "submitted.json").exists()


def test_a_run_with_only_its_previous_checkpoint_is_resumed(tmp_path: Path) -> None:
    # last.pt lost (or set aside as damaged): training resumes from prev.pt, so the sweep must
    # resume the run rather than start it anew (which training would refuse as an existing run)
    run = tmp_path / "r"
    (run / "checkpoints").mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({"status": "interrupted", "step": 7}))
    assert run_status(run).state == "new"
    (run / "checkpoints" / "prev.pt").write_bytes(b"a checkpoint")
    status = run_status(run)
    assert status.state == "resume" and "step 7" in status.detail
