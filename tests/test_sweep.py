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
