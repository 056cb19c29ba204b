"""Multi-stage runs (issue 11): a run starts from an upstream run's weights (``init``), trains or
reuses its upstream stage, records it, resumes without it, and sweeps order the stages."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import pytest
import torch

import disentkit
from disentkit.cli import main
from disentkit.config import ConfigError, load_config
from disentkit.experiments.stages import plan_stages
from disentkit.experiments.sweep import (
    RunSpec,
    SweepPlan,
    _levels,
    _next_ready,
    execute_local,
    plan_sweep,
    submit_submitit,
)
from disentkit.training.checkpoint import load_checkpoint

BASE = [
    "imports=[toy_plugin]", "data.name=toy_bars", "model.name=toy_ae", "train.batch_size=8",
    "log.every=1", "log.progress=false", "train.num_threads=1", "eval.at_end=false",
    "eval.report_at_end=false",
]

STAGE1 = """\
imports: [toy_plugin]
model: {name: toy_ae}
data: {name: toy_bars}
train: {steps: 3, batch_size: 8, num_threads: 1, ema_decay: 0.5}
eval: {at_end: false, report_at_end: false}
log: {every: 1, progress: false}
"""


def _train(out: Path, name: str, *extra: str) -> Path:
    return disentkit.train(load_config(None, [*BASE, f"out_dir={out}", f"name={name}", *extra]))


def _header_sha256(path: Path) -> str:
    return path.read_bytes().split(b"\n", 2)[1].split()[1].decode()


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("disentkit train: error:")]
    assert len(errors) == 1 and "Traceback" not in "\n".join(err), err
    return errors[0]


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished stage-1 run with EMA weights (its EMA encoder differs from its raw one)."""
    return _train(tmp_path_factory.mktemp("up"), "up", "train.steps=3", "train.ema_decay=0.5")


@pytest.fixture()
def presets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A two-stage preset pair as YAML files in the working directory: stage2 names stage1 as
    its upstream preset."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "stage1.yaml").write_text(STAGE1)
    (tmp_path / "stage2.yaml").write_text(
        "base: stage1.yaml\n"
        "init: {preset: stage1.yaml, modules: [enc], freeze: [enc]}\n"
        "train: {ema_decay: null}\n"
    )
    return tmp_path


# ---- loading, freezing, recording ------------------------------------------------------------
def test_stage_two_starts_from_the_upstream_ema_encoder_and_keeps_it_frozen(tmp_path, upstream) -> None:
    up_state = load_checkpoint(upstream / "checkpoints" / "last.pt")
    ema_enc = up_state["ema"][""]["module.enc.weight"]
    assert not torch.equal(ema_enc, up_state["model"]["enc.weight"])  # the EMA is what is tested
    run = _train(tmp_path, "down", "train.steps=4", f"init.run={upstream}", "init.modules=[enc]",
                 "init.freeze=[enc]")
    down = load_checkpoint(run / "checkpoints" / "last.pt")["model"]
    assert torch.equal(down["enc.weight"], ema_enc) and torch.equal(down["enc.bias"],
                                                                    up_state["ema"][""]["module.enc.bias"])
    assert not torch.equal(down["dec.weight"], up_state["model"]["dec.weight"])  # the rest trained
    # config.yaml and summary.json record the resolved upstream folder and its checkpoint's sha256
    digest = _header_sha256(upstream / "checkpoints" / "last.pt")
    config = disentkit.load_run(run).config
    assert config.init.run == str(upstream.resolve()) and config.init.sha256 == digest
    summary = json.loads((run / "summary.json").read_text())
    assert summary["upstream"] == {"run": str(upstream.resolve()), "sha256": digest}


def test_use_ema_false_and_all_matching_weights(tmp_path, upstream) -> None:
    run = _train(tmp_path, "raw", "train.steps=1", f"init.run={upstream}", "init.use_ema=false",
                 "optim.lr=1e-12")
    raw = load_checkpoint(upstream / "checkpoints" / "last.pt")["model"]
    down = load_checkpoint(run / "checkpoints" / "last.pt")["model"]
    for key in raw:  # every weight was taken (raw, not EMA); lr 1e-12 moves nothing visibly
        torch.testing.assert_close(down[key], raw[key], rtol=0, atol=1e-9)


def test_frozen_module_stays_in_eval_mode(upstream) -> None:
    import toy_plugin
    from disentkit.training.stages import apply_init

    config = load_config(None, [*BASE, f"init.run={upstream}", "init.freeze=[enc]"])
    model = toy_plugin.ToyAE(toy_plugin.ToyAEConfig(), (1, 32, 32))
    recorded = apply_init(model, config, resume=False)
    model.train()
    assert not model.enc.training and model.dec.training
    assert not any(p.requires_grad for p in model.enc.parameters())
    assert recorded.init.sha256 and config.init.sha256 == ""  # the caller's config is not changed


def test_resume_never_reads_the_upstream_run(tmp_path, upstream, capsys) -> None:
    copy = tmp_path / "upcopy"
    shutil.copytree(upstream, copy)
    run = _train(tmp_path, "down", "train.steps=2", "train.checkpoint_every=1", f"init.run={copy}",
                 "init.modules=[enc]", "init.freeze=[enc]")
    enc = load_checkpoint(run / "checkpoints" / "last.pt")["model"]["enc.weight"]
    shutil.rmtree(copy)
    assert main(["train", "--resume", str(run), "train.steps=4", "--trust-imports"]) == 0, \
        capsys.readouterr().err
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["step"] == 4 and torch.equal(state["model"]["enc.weight"], enc)  # still frozen
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["upstream"]["run"] == str(copy.resolve())


# ---- one-line errors ----------------------------------------------------------------------------
def _damage(run: Path) -> None:
    last = run / "checkpoints" / "last.pt"
    data = bytearray(last.read_bytes())
    data[-10] ^= 0xFF
    last.write_bytes(bytes(data))


def _unfinish(run: Path) -> None:
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "status": "interrupted", "step": 2}))


@pytest.mark.parametrize("case, extra, expected", [
    ("missing", [], "does not exist"),
    ("unfinished", [], "has not finished training (status interrupted at step 2 of 3)"),
    ("damaged", [], "sha256 checksum does not match"),
    ("copy", ["init.modules=[encoder]"], "this model has no module 'encoder'"),
    ("copy", ["init.modules=[enc=encoder]"], "has no module 'encoder'; its modules: dec, enc"),
    ("copy", ["model.latent_dim=3", "init.modules=[enc]"], "do not fit this model's shapes (enc.weight"),
    ("copy", ["init.sha256=" + "0" * 64], "the upstream run changed since"),
    ("copy", ["init.freeze=[nope]"], "init.freeze: cannot freeze 'nope'"),
])
def test_unusable_upstream_is_one_line_and_writes_nothing(tmp_path, upstream, capsys, case, extra,
                                                          expected) -> None:
    source = tmp_path / "up"
    if case != "missing":
        shutil.copytree(upstream, source)
    {"damaged": _damage, "unfinished": _unfinish}.get(case, lambda run: None)(source)
    args = ["train", *BASE, f"out_dir={tmp_path}", "name=down", f"init.run={source}", *extra]
    assert main(args) == 2
    line = _error_line(capsys)
    assert expected in line, line
    assert len(line) < 400
    assert not (tmp_path / "down" / "checkpoints").exists()


def test_init_section_values_are_checked_at_load() -> None:
    for words, expected in [
        (["init.modules=[enc]"], "need an upstream run"),
        (["init.overrides=[seed=1]"], "init.preset is not set"),
        (["init.preset=vae/smoke", "init.overrides=[out_dir=x]"], "trains beside this run"),
        (["init.run=x", "init.modules=[a=b=c]"], "is not a module path"),
        (["init.run=x", "init.sha256=abc"], "is not a sha256"),
    ]:
        with pytest.raises(ConfigError, match=expected):
            load_config(None, [*BASE, *words])


# ---- an upstream preset: trained first, reused, resumed -----------------------------------------
def test_upstream_preset_is_trained_beside_the_run_then_reused_and_resumed(tmp_path, presets,
                                                                            capsys) -> None:
    out = tmp_path / "runs"
    stage2 = "stage2.yaml"
    assert main(["train", f"preset={stage2}", f"out_dir={out}", "name=a"]) == 0
    up = out / load_config("stage1.yaml").run_name
    assert json.loads((up / "summary.json").read_text())["status"] == "finished"
    assert "training the upstream stage" in capsys.readouterr().err
    up_last = up / "checkpoints" / "last.pt"
    written = up_last.stat().st_mtime_ns
    digest = _header_sha256(up_last)
    assert json.loads((out / "a" / "summary.json").read_text())["upstream"]["sha256"] == digest
    # a second run of stage 2 (another seed) reuses the finished stage: not trained again
    assert main(["train", f"preset={stage2}", f"out_dir={out}", "name=b", "seed=1"]) == 0
    assert "starting from the finished upstream stage" in capsys.readouterr().err
    assert up_last.stat().st_mtime_ns == written
    # an interrupted upstream stage is resumed, not started again
    _unfinish(up)
    assert main(["train", f"preset={stage2}", f"out_dir={out}", "name=c"]) == 0
    assert "resuming the upstream stage" in capsys.readouterr().err
    assert json.loads((up / "summary.json").read_text())["status"] == "finished"
    assert load_config(None, [f"preset={stage2}"]).init.run == ""  # the preset keeps naming a preset


def test_upstream_folder_holding_another_run_is_refused(tmp_path, presets, capsys) -> None:
    out = tmp_path / "runs"
    stage2 = "stage2.yaml"
    assert main(["train", f"preset={stage2}", f"out_dir={out}", "name=a"]) == 0
    capsys.readouterr()
    assert main(["train", f"preset={stage2}", f"out_dir={out}", "name=b",
                 "init.overrides=[optim.lr=0.01]"]) == 2
    line = _error_line(capsys)
    assert "holds another run" in line and "optim.lr" in line and "name=NAME" in line
    assert not (out / "b" / "checkpoints").exists()


def test_stages_that_name_each_other_are_refused(tmp_path, capsys) -> None:
    (tmp_path / "a.yaml").write_text(STAGE1 + f"init: {{preset: {tmp_path / 'b.yaml'}}}\n")
    (tmp_path / "b.yaml").write_text(STAGE1 + f"init: {{preset: {tmp_path / 'a.yaml'}}}\n")
    assert main(["train", f"preset={tmp_path / 'a.yaml'}", f"out_dir={tmp_path / 'runs'}"]) == 2
    assert "chain of upstream stages does not end" in _error_line(capsys)
    with pytest.raises(ConfigError, match="does not end"):
        plan_sweep([f"preset={tmp_path / 'a.yaml'}", "seed=0:2"], tmp_path / "sweep")


# ---- sweeps ---------------------------------------------------------------------------------
# A stand-in for `disentkit train`: an upstream stage (no init.run) takes a moment; every call
# records its argv and whether the folder its init.run names was finished when it started.
FAKE_TRAIN = r'''
import json, sys, time
from pathlib import Path
args = sys.argv[1:]
if args[0] == "--resume":
    run, kv = Path(args[1]), {}
else:
    kv = dict(a.split("=", 1) for a in args)
    run = Path(kv["out_dir"]) / kv["name"]
run.mkdir(parents=True, exist_ok=True)
upstream = kv.get("init.run")
seen = None
if upstream:
    seen = json.loads((Path(upstream) / "summary.json").read_text())["status"]
else:
    time.sleep(0.5)
    if kv.get("seed") == "13":
        sys.exit(3)
with open(run / "calls.jsonl", "a") as f:
    f.write(json.dumps({"args": args, "upstream_seen": seen, "t": time.time()}) + "\n")
(run / "summary.json").write_text(json.dumps({"status": "finished", "step": 1}))
'''


@pytest.fixture()
def fake_train(tmp_path: Path) -> list[str]:
    script = tmp_path / "fake_train.py"
    script.write_text(FAKE_TRAIN)
    return [sys.executable, str(script)]


def _calls(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "calls.jsonl").read_text().splitlines()]


def test_sweep_trains_a_shared_upstream_stage_once_and_first(tmp_path, presets, fake_train) -> None:
    out = tmp_path / "sweep"
    plan = plan_sweep([f"preset={'stage2.yaml'}", "seed=0:3"], out)
    stage = load_config("stage1.yaml").run_name
    assert [s.name for s in plan.stages] == [stage]
    assert plan.upstream == {r.name: stage for r in plan.runs}
    outcome = execute_local(plan, parallel=3, train_command=fake_train, echo=False)
    assert list(outcome) == [stage, *[r.name for r in plan.runs]]
    assert set(outcome.values()) == {"finished"}
    (stage_call,) = _calls(out / stage)  # trained once for all three runs
    for run in plan.runs:
        (call,) = _calls(out / run.name)
        assert f"init.run={out / stage}" in call["args"] and call["upstream_seen"] == "finished"
        assert call["t"] > stage_call["t"]
    assert json.loads((out / "sweep.json").read_text())["stages"][0]["name"] == stage
    # again: everything is finished, nothing is run
    again = execute_local(plan, parallel=3, train_command=fake_train, echo=False)
    assert set(again.values()) == {"skipped"}


def test_runs_after_a_failed_stage_are_not_started(tmp_path, presets, fake_train, capsys) -> None:
    out = tmp_path / "sweep"
    words = [f"preset={'stage2.yaml'}", "init.overrides=[seed=13]", "seed=0:2"]
    plan = plan_sweep(words, out)
    outcome = execute_local(plan, train_command=fake_train, echo=False)
    stage = plan.stages[0].name
    assert outcome[stage] == "failed (exit 3)"
    for run in plan.runs:
        assert outcome[run.name] == f"not started (upstream stage {stage} failed (exit 3))"
        assert not (out / run.name).exists()
    from disentkit.experiments import sweep as sweep_module

    monkey = pytest.MonkeyPatch()
    monkey.setattr(sweep_module, "default_train_command", lambda: list(fake_train))
    try:
        assert main(["sweep", *words, "--out", str(out)]) == 1  # not started counts as failed
    finally:
        monkey.undo()


def _plan(tmp_path: Path, upstream: dict[str, str], stages: list[str], runs: list[str]) -> SweepPlan:
    return SweepPlan(tmp_path, None, [], [], [RunSpec(i, n, []) for i, n in enumerate(runs)],
                     [RunSpec(i, n, []) for i, n in enumerate(stages)], upstream)


def _finish(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "summary.json").write_text(json.dumps({"status": "finished"}))


def _take(plan: SweepPlan, pending: list, outcome: dict, running: dict) -> tuple[str | None, str]:
    run, why = _next_ready(plan, pending, outcome, running)
    return (run.name if run else None), why


def test_ordering_waits_for_upstream_stages(tmp_path) -> None:
    from disentkit.run_lock import RunLock

    plan = _plan(tmp_path, {"s2": "s1", "r0": "s2", "r1": "s1"}, ["s1", "s2"], ["r0", "r1", "r2"])
    assert [[r.name for r in level] for level in _levels(plan)] == [["s1", "r2"], ["s2", "r1"], ["r0"]]
    pending, outcome, running = plan.all_runs, {}, {}
    assert _take(plan, pending, outcome, running) == ("s1", "")
    running["s1"] = object()
    # s2, r0 and r1 wait for s1 while it trains; r2 starts from nothing
    assert _take(plan, pending, outcome, running) == ("r2", "")
    assert _take(plan, pending, outcome, running) == (None, "")
    # another process trains s1 (its live lock): still waiting
    del running["s1"]
    outcome["s1"] = "running elsewhere"
    with RunLock(tmp_path / "s1", heartbeat_s=0):
        assert _take(plan, pending, outcome, running) == (None, "")
    # once s1's folder holds it finished, s2 and r1 start; r0 waits for s2
    _finish(tmp_path / "s1")
    assert _take(plan, pending, outcome, running) == ("s2", "")
    running["s2"] = object()
    assert _take(plan, pending, outcome, running) == ("r1", "")
    assert _take(plan, pending, outcome, running) == (None, "")
    del running["s2"]
    outcome["s2"] = "failed (exit 3)"
    assert _take(plan, pending, outcome, running) == ("r0", "not started (upstream stage s2 failed (exit 3))")
    assert pending == []


def test_a_stage_that_ended_without_finishing_starts_nothing(tmp_path) -> None:
    plan = _plan(tmp_path, {"s2": "s1", "r0": "s2"}, ["s1", "s2"], ["r0"])
    pending, outcome = plan.all_runs, {}
    assert _take(plan, pending, outcome, {}) == ("s1", "")
    outcome["s1"] = "finished"  # its process exited 0, but its folder does not say finished
    name, why = _take(plan, pending, outcome, {})
    assert name == "s2" and why == "not started (upstream stage s1 did not finish: new)"
    outcome["s2"] = why
    assert _take(plan, pending, outcome, {}) == ("r0", "not started (upstream stage s2 was not started)")


def test_plan_refuses_two_different_stages_with_one_name(tmp_path, presets) -> None:
    stage2 = "stage2.yaml"
    runs = [(f"r{i}", load_config(None, [f"preset={stage2}", f"init.overrides=[optim.lr={lr}]"]))
            for i, lr in enumerate((0.1, 0.2))]
    with pytest.raises(ConfigError, match="different upstream stages named"):
        plan_stages(runs, tmp_path)
    shared = [(f"r{i}", load_config(None, [f"preset={stage2}", f"seed={i}"])) for i in range(2)]
    stages, upstream = plan_stages(shared, tmp_path)
    assert len(stages) == 1 and set(upstream) == {"r0", "r1"}


def test_submitit_submits_stages_before_the_runs(tmp_path, presets, fake_train) -> None:
    pytest.importorskip("submitit")
    out = tmp_path / "sweep"
    plan = plan_sweep([f"preset={'stage2.yaml'}", "seed=0:2"], out)
    started = time.time()
    jobs = submit_submitit(plan, cluster="debug", train_command=fake_train, wait=True)
    assert len(jobs) == 3
    stage_call = _calls(out / plan.stages[0].name)[0]
    assert stage_call["t"] > started
    for run in plan.runs:
        (call,) = _calls(out / run.name)
        assert call["upstream_seen"] == "finished" and call["t"] > stage_call["t"]
