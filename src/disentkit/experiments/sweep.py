"""Sweeps: a grid of settings times seeds, expanded into numbered runs and executed.

Expansion is deterministic and indexable, as in disentanglement_lib's ``sweep.py``
(``h.product([...])`` + ``--model_num``): the cartesian product of
the axes in the order given, the last axis varying fastest, numbered from 0. An axis is an
override whose value is a comma list (``model.beta=1,2,4``) or an integer range
(``seed=0:10`` -> 0..9, ``seed=0:10:2``); any other override is fixed for every run.

The sweep folder holds ``sweep.json`` (the manifest: axes, fixed overrides, every run's number,
name and overrides), one run directory per run (made by ``disentkit train ... name=NAME
out_dir=SWEEP``), and ``logs/NAME.log``. Executing again skips runs that are complete
(``summary.json`` says ``finished`` and the evaluation and report the config asks for are
written), skips runs that another live process holds (their ``run.lock``,
:mod:`disentkit.run_lock`), and resumes the others that started (``disentkit train --resume
RUN_DIR``, which also evaluates a trained run whose evaluation was cut short), so a sweep can be
re-launched after a crash or a cluster pre-emption, or launched twice on one folder to share the
runs. Runs evaluate themselves when training ends (``eval.at_end``); the sweep never turns that
off.

Multi-stage runs: runs whose ``init`` names an upstream preset (and no upstream run) have an
upstream stage (:mod:`disentkit.experiments.stages`). The plan holds each distinct stage once, in
the sweep folder under its run name, even when many runs start from it; stages run before the
runs (and stages) that start from them, and a run starts only once its upstream stage's folder
holds it finished, with ``init.run`` naming that folder. A run whose upstream stage failed is not
started (``not started (...)``).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from disentkit.config import ConfigError, EvalConfig
from disentkit.errors import UserError
from disentkit.run_lock import EXIT_LOCKED, lock_state

__all__ = [
    "Axis",
    "RunSpec",
    "RunStatus",
    "SweepPlan",
    "execute_local",
    "expand",
    "parallel_env",
    "parse_sweep_args",
    "plan_sweep",
    "run_state",
    "run_status",
    "submit_submitit",
    "train_argv",
]

MANIFEST = "sweep.json"
_RANGE = re.compile(r"^(-?\d+):(-?\d+)(?::(-?\d+))?$")


@dataclass
class Axis:
    """One swept key with its values as override strings (``key=value``)."""

    key: str
    raw_values: list[str]

    @property
    def values(self) -> list[Any]:
        return [yaml.safe_load(v) for v in self.raw_values]


@dataclass
class RunSpec:
    index: int
    name: str
    overrides: list[str]
    #: the swept values of this run ({"model.beta": 4, "seed": 0})
    params: dict[str, Any] = field(default_factory=dict)


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside brackets/braces/quotes (``[0.9,0.99],[0.5,0.9]`` -> 2 items)."""
    parts, depth, quote, current = [], 0, "", []
    for ch in text:
        if quote:
            current.append(ch)
            if ch == quote:
                quote = ""
            continue
        if ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return parts


def parse_sweep_args(args: Sequence[str]) -> tuple[str | None, list[Axis], list[str]]:
    """Split CLI words into (preset, axes, fixed overrides).

    ``seed=0:10`` -> seeds 0..9; ``model.beta=1,2,4`` -> an axis; ``preset=a,b`` sweeps presets;
    a single value is a fixed override.
    """
    preset: str | None = None
    axes: list[Axis] = []
    fixed: list[str] = []
    seen: set[str] = set()
    for text in args:
        if "=" not in text:
            raise ConfigError(
                f"sweep argument '{text}' must look like key=value, key=a,b,c or key=start:stop "
                "(e.g. model.beta=1,2,4 seed=0:10)"
            )
        key, raw = text.split("=", 1)
        if not key or not raw:
            raise ConfigError(f"sweep argument '{text}' has an empty key or value")
        if key in seen:
            raise ConfigError(f"sweep key '{key}' is given twice; list all its values once: {key}=a,b")
        seen.add(key)
        match = _RANGE.match(raw)
        if match:
            start, stop, step = int(match[1]), int(match[2]), int(match[3] or 1)
            if step == 0 or not range(start, stop, step):
                raise ConfigError(f"'{text}': the range {start}:{stop}:{step} is empty")
            axes.append(Axis(key, [str(v) for v in range(start, stop, step)]))
            continue
        values = _split_top_level(raw)
        if any(v == "" for v in values):
            raise ConfigError(f"'{text}': empty value in the comma list")
        if len(values) > 1:
            axes.append(Axis(key, values))
        elif key == "preset":
            preset = raw
        else:
            fixed.append(text)
    return preset, axes, fixed


def _slug(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", value).strip("-") or "x"


def expand(axes: Sequence[Axis], fixed: Sequence[str], preset: str | None = None) -> list[RunSpec]:
    """All runs of the grid: the product of the axes (last axis fastest), numbered from 0.

    Run names are ``NNN-key=value-...`` with the last part of each swept key
    (``003-beta=2-seed=1``); every run's overrides are the preset, the fixed overrides, then its
    swept values.
    """
    width = max(3, len(str(max(0, _count(axes) - 1))))
    runs = []
    for index, combo in enumerate(itertools.product(*[a.raw_values for a in axes])):
        parts = [f"{a.key.split('.')[-1]}={_slug(v)}" for a, v in zip(axes, combo)]
        name = "-".join([f"{index:0{width}d}", *parts])
        overrides = ([f"preset={preset}"] if preset else []) + list(fixed)
        overrides += [f"{a.key}={v}" for a, v in zip(axes, combo)]
        params = {a.key: yaml.safe_load(v) for a, v in zip(axes, combo)}
        runs.append(RunSpec(index, name, overrides, params))
    return runs


def _count(axes: Sequence[Axis]) -> int:
    n = 1
    for a in axes:
        n *= len(a.raw_values)
    return n


@dataclass
class SweepPlan:
    out_dir: Path
    preset: str | None
    axes: list[Axis]
    fixed: list[str]
    runs: list[RunSpec]
    #: upstream stages of the runs (multi-stage runs), each after the stage it starts from
    stages: list[RunSpec] = field(default_factory=list)
    #: {run or stage name: the name of the upstream stage it starts from}
    upstream: dict[str, str] = field(default_factory=dict)

    def manifest(self) -> dict[str, Any]:
        manifest = {
            "version": 1,
            "preset": self.preset,
            "axes": {a.key: a.raw_values for a in self.axes},
            "fixed": self.fixed,
            "runs": [asdict(r) for r in self.runs],
        }
        if self.stages:
            manifest["stages"] = [asdict(r) for r in self.stages]
            manifest["upstream"] = dict(self.upstream)
        return manifest

    def run_dir(self, run: RunSpec) -> Path:
        return self.out_dir / run.name

    @property
    def all_runs(self) -> list[RunSpec]:
        """Stages first (in dependency order), then the runs."""
        return [*self.stages, *self.runs]

    def label(self, run: RunSpec) -> str:
        """``[3]`` for run 3, ``[stage]`` for an upstream stage (in messages)."""
        return "[stage]" if run.name in {s.name for s in self.stages} else f"[{run.index}]"

    def write_manifest(self) -> Path:
        """Write ``sweep.json``; an existing manifest must describe the same runs (re-launching
        a sweep resumes it; changing the grid needs a new folder)."""
        path = self.out_dir / MANIFEST
        manifest = self.manifest()
        if path.is_file():
            old = json.loads(path.read_text())
            if old.get("runs") != manifest["runs"]:
                raise ConfigError(
                    f"{path} describes a different sweep ({len(old.get('runs', []))} runs); use a "
                    "new --out folder for a new grid, or delete the old manifest"
                )
            return path
        self.out_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(manifest, indent=2))
        tmp.replace(path)
        return path


def plan_sweep(args: Sequence[str], out_dir: Path, check: bool = True) -> SweepPlan:
    """Parse CLI words, expand the grid and (``check``) validate every run's config up front, so
    a typo fails before anything is launched."""
    preset, axes, fixed = parse_sweep_args(args)
    for text in fixed:
        if text.split("=", 1)[0] in ("name", "out_dir"):
            raise ConfigError(f"'{text}': the sweep sets each run's name and out_dir itself")
    runs = expand(axes, fixed, preset)
    plan = SweepPlan(Path(out_dir), preset, axes, fixed, runs)
    if check:
        from disentkit.config import load_config

        configs = []
        for run in runs:
            config = load_config(None, run.overrides)
            configs.append((run.name, config))
            if not config.eval.at_end:
                print(f"warning: run {run.name} has eval.at_end=false; it will not be evaluated and "
                      "`disentkit aggregate` will find no results for it", file=sys.stderr)
        _plan_stages(plan, configs)
    return plan


def _plan_stages(plan: SweepPlan, configs: list[tuple[str, Any]]) -> None:
    """Add the runs' upstream stages to ``plan`` (see :func:`disentkit.experiments.stages.plan_stages`)."""
    from disentkit.experiments.stages import plan_stages

    stages, plan.upstream = plan_stages(configs, plan.out_dir)
    names = {r.name for r in plan.runs}
    for index, stage in enumerate(stages):
        if stage.name in names:
            raise ConfigError(f"init: the upstream stage {stage.name} has the folder name of a run "
                              "of the sweep; give it another with init.overrides=[..., name=NAME]")
        plan.stages.append(RunSpec(index, stage.name, stage.words))


@dataclass
class RunStatus:
    """Where a run stands: ``state`` is ``new``, ``resume``, ``running`` or ``finished``;
    ``detail`` says why, for messages."""

    state: str
    detail: str = ""


def _newer_or_same(path: Path, than: Path) -> bool:
    """``path`` exists and was written no earlier than ``than`` (or ``than`` is missing)."""
    if not path.is_file():
        return False
    return not than.is_file() or path.stat().st_mtime_ns >= than.stat().st_mtime_ns


def _missing_outputs(run_dir: Path, summary: dict[str, Any]) -> list[str]:
    """What a trained run still owes per its config: results.json (``eval.at_end`` with
    metrics, unless the evaluation was skipped for data without ground truth) and report.html
    (``eval.report_at_end``), each written after the final checkpoint."""
    try:
        config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return []
    evaluation = config.get("eval") or {}
    defaults = EvalConfig()  # for keys a hand-written config.yaml leaves out
    checkpoint = run_dir / "checkpoints" / "last.pt"
    missing = []
    wants_eval = bool(evaluation.get("at_end", defaults.at_end)) \
        and bool(evaluation.get("metrics", defaults.metrics))
    if wants_eval and "evaluation" not in summary \
            and not _newer_or_same(run_dir / "results.json", checkpoint):
        missing.append("results.json")
    report_at_end = evaluation.get("report_at_end", defaults.report_at_end)
    if report_at_end and not _newer_or_same(run_dir / "report.html", checkpoint):
        missing.append("report.html")
    return missing


def run_status(run_dir: Path) -> RunStatus:
    """Judge a run directory for a sweep.

    * ``finished``: ``summary.json`` says finished and the results and report its config asks
      for were written after the final checkpoint;
    * ``running``: not complete and another live process holds its lock (training, or
      evaluating and reporting after training);
    * ``resume``: started (a checkpoint exists), not finished and not held; or trained but its
      evaluation/report is missing (``train --resume`` of a finished run only evaluates);
    * ``new``: nothing to resume from (no checkpoint yet; a dead process's lock is ignored).
    """
    run_dir = Path(run_dir)
    summary: dict[str, Any] = {}
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, json.JSONDecodeError):
        pass
    finished = summary.get("status") == "finished"
    missing = _missing_outputs(run_dir, summary) if finished else []
    if finished and not missing:
        return RunStatus("finished")
    lock, holder = lock_state(run_dir)
    if lock == "live":
        assert holder is not None
        doing = "evaluating" if finished else "training"
        return RunStatus("running", f"{doing} in another process ({holder.describe()})")
    dead = f"; its process died ({holder.describe()})" if holder is not None else ""
    if finished:
        return RunStatus("resume", f"trained, {' and '.join(missing)} missing{dead}")
    # prev.pt alone (last.pt lost or set aside as damaged) is resumable too: resume falls back on it
    if any((run_dir / "checkpoints" / name).is_file() for name in ("last.pt", "prev.pt")):
        step = summary.get("step", "?")
        was = summary.get("status", "started")
        return RunStatus("resume", f"{was} at step {step}{dead}")
    return RunStatus("new", dead.lstrip("; "))


def run_state(run_dir: Path) -> str:
    """``finished``, ``running``, ``resume`` or ``new`` (:func:`run_status` without the detail)."""
    return run_status(run_dir).state


def default_train_command() -> list[str]:
    return [sys.executable, "-m", "disentkit", "train"]


def train_argv(
    plan: SweepPlan, run: RunSpec, train_command: Sequence[str] | None = None,
    status: RunStatus | None = None,
) -> list[str] | None:
    """The command line that brings ``run`` to completion, or None when it already finished or
    another live process is running it."""
    command = list(train_command or default_train_command())
    run_dir = plan.run_dir(run)
    state = (status or run_status(run_dir)).state
    if state in ("finished", "running"):
        return None
    if state == "resume":
        return command + ["--resume", str(run_dir), *_imports_override(run)]
    # A run with an upstream stage starts from the stage's folder (which the sweep trains first).
    upstream = [f"init.run={plan.out_dir / plan.upstream[run.name]}"] if run.name in plan.upstream else []
    return command + run.overrides + [f"name={run.name}", f"out_dir={plan.out_dir}", *upstream]


def _imports_override(run: RunSpec) -> list[str]:
    """``imports=[...]`` for a resumed run whose sweep words (or preset) import modules: the
    resumed process must not take them from the run folder's config.yaml, which it does not
    trust (see :func:`disentkit.config.load_config_file`)."""
    from disentkit.config import load_config

    imports = load_config(None, run.overrides).imports
    return [f"imports=[{', '.join(imports)}]"] if imports else []


def _outcome(code: int) -> str:
    if code == 0:
        return "finished"
    if code == EXIT_LOCKED:  # another process took the run between our check and the start
        return "running elsewhere"
    return f"failed (exit {code})"


def _run_logged(argv: Sequence[str], log_path: str) -> int:
    """Run ``argv`` with stdout/stderr appended to ``log_path``; return its exit status."""
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as log:
        log.write(f"$ {' '.join(argv)}\n")
        log.flush()
        return subprocess.call(list(argv), stdout=log, stderr=subprocess.STDOUT)


def execute_local(
    plan: SweepPlan, parallel: int = 1, train_command: Sequence[str] | None = None,
    echo: bool = True,
) -> dict[str, str]:
    """Run the unfinished runs as subprocesses, ``parallel`` at a time; returns
    ``{name: "skipped" | "running elsewhere" | "finished" | "failed (exit N)" | "not started
    (...)"}`` for the upstream stages, then the runs. A failing run does not stop the others,
    but the runs that start from a failed stage are not started. Each run's state is read just
    before it would start, so two sweeps on one folder share the runs instead of both training
    them; a run whose upstream stage another process is training waits for it."""
    if parallel < 1:
        raise ConfigError(f"--parallel must be >= 1, got {parallel}")
    plan.write_manifest()
    outcome: dict[str, str] = {}
    pending = plan.all_runs
    running: dict[str, tuple[subprocess.Popen, Any]] = {}
    env = parallel_env(parallel)
    while pending or running:
        while len(running) < parallel:
            run, blocked = _next_ready(plan, pending, outcome, running)
            if run is None:
                break
            if blocked:
                outcome[run.name] = blocked
                if echo:
                    print(f"{plan.label(run)} {run.name}: {blocked}")
                continue
            status = run_status(plan.run_dir(run))
            argv = train_argv(plan, run, train_command, status)
            if argv is None:
                outcome[run.name] = "skipped" if status.state == "finished" else "running elsewhere"
                if echo:
                    why = "finished" if status.state == "finished" else status.detail
                    print(f"{plan.label(run)} {run.name}: {why}, skipped")
                continue
            log_path = plan.out_dir / "logs" / f"{run.name}.log"
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log = open(log_path, "a")  # noqa: SIM115 - closed when the process ends
            log.write(f"$ {' '.join(argv)}\n")
            log.flush()
            if echo:
                verb = f"resuming ({status.detail})" if status.state == "resume" else "starting"
                print(f"{plan.label(run)} {run.name}: {verb} (log: {log_path})")
            running[run.name] = (subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env), log)
        for name, (proc, log) in list(running.items()):
            code = proc.poll()
            if code is None:
                continue
            log.close()
            del running[name]
            outcome[name] = _outcome(code)
            if echo:
                print(f"{name}: {outcome[name]}")
        if running or pending:  # pending: waiting for an upstream stage another process trains
            time.sleep(0.2)
    return {r.name: outcome[r.name] for r in plan.all_runs}


def parallel_env(parallel: int, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of the runs of ``--parallel N``: N processes share the machine (and its
    one GPU), so unless the user set OMP_NUM_THREADS each gets an N-th of the CPU cores instead
    of all of them (N processes with every core each slow each other down); a run's
    ``train.num_threads`` still wins."""
    env = dict(os.environ if environ is None else environ)
    if parallel > 1 and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // parallel))
    return env


def _next_ready(
    plan: SweepPlan, pending: list[RunSpec], outcome: dict[str, str], running: dict[str, Any],
) -> tuple[RunSpec | None, str]:
    """Take the first pending run that can be decided now: ``(run, "")`` when it has no upstream
    stage or its stage's folder holds it finished, ``(run, "not started (...)")`` when its stage
    will not finish, ``(None, "")`` when every pending run waits for a stage still training."""
    for i, run in enumerate(pending):
        upstream = plan.upstream.get(run.name)
        if upstream is None:
            return pending.pop(i), ""
        if upstream in running or upstream not in outcome:
            continue
        result = outcome[upstream]
        if result.startswith(("failed", "not started")):
            why = "was not started" if result.startswith("not started") else result
            return pending.pop(i), f"not started (upstream stage {upstream} {why})"
        state = run_status(plan.out_dir / upstream).state
        if state == "running":  # another process is training the stage: wait for it
            continue
        if state == "finished":
            return pending.pop(i), ""
        return pending.pop(i), f"not started (upstream stage {upstream} did not finish: {state})"
    return None, ""


def _submitit_job(argv: list[str], log_path: str) -> int:
    """The function each array task runs (importable, so submitit can pickle it by reference)."""
    code = _run_logged(argv, log_path)
    if code not in (0, EXIT_LOCKED):  # a run another process holds is not this task's failure
        raise RuntimeError(f"`{' '.join(argv)}` exited with status {code}; see {log_path}")
    return code


class SubmitError(UserError):
    """A sweep cannot be submitted from this machine (submitit missing, no SLURM tools on PATH)."""


def submit_submitit(
    plan: SweepPlan,
    cluster: str | None = "slurm",
    *,
    partition: str | None = None,
    time_min: int = 60 * 24,
    gpus_per_node: int = 1,
    cpus_per_task: int = 8,
    mem_gb: int | None = None,
    array_parallelism: int = 64,
    account: str | None = None,
    extra: dict[str, Any] | None = None,
    train_command: Sequence[str] | None = None,
    wait: bool = False,
) -> list[Any]:
    """Submit the unfinished runs as one job array through submitit (``cluster="slurm"``;
    ``"local"`` runs them as local subprocesses with the same code path, ``"debug"`` in-process).

    Returns the submitit jobs (empty when everything finished). ``wait`` blocks until they end
    and raises if one failed.

    Multi-stage sweeps are submitted level by level (upstream stages first): on SLURM each
    later level's array waits for the earlier ones (``--dependency=afterok``, so a failed stage
    holds back the next level); the local and debug executors wait for each level to end before
    submitting the next, leaving out the runs whose upstream stage did not finish.
    """
    try:
        import submitit
    except ImportError as err:
        raise SubmitError(
            "submitting a sweep needs submitit, an optional dependency: "
            "pip install 'disentkit[slurm]' (or run it locally with --executor local)"
        ) from err
    if cluster == "slurm":
        missing = [tool for tool in ("srun", "sbatch") if shutil.which(tool) is None]
        if missing:
            raise SubmitError(
                f"--executor slurm needs SLURM's {' and '.join(missing)} on PATH and found none; run the "
                "sweep on a SLURM login node, or use --executor local (or submitit-local) here"
            )

    plan.write_manifest()
    folder = plan.out_dir / "submitit" / "%j"
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    params: dict[str, Any] = {"timeout_min": time_min, "name": f"disentkit-{plan.out_dir.name}"}
    if executor.cluster == "slurm":
        params.update(
            slurm_array_parallelism=array_parallelism, gpus_per_node=gpus_per_node,
            cpus_per_task=cpus_per_task, tasks_per_node=1, nodes=1,
        )
        if partition:
            params["slurm_partition"] = partition
        if mem_gb:
            params["mem_gb"] = mem_gb
        if account:
            params["slurm_account"] = account
    elif executor.cluster == "local":
        params.update(gpus_per_node=0 if gpus_per_node is None else gpus_per_node,
                      cpus_per_task=cpus_per_task)
    params.update(extra or {})
    executor.update_parameters(**params)
    slurm = executor.cluster == "slurm"
    submitted: list[tuple[RunSpec, Any]] = []
    levels = _levels(plan)
    for number, level in enumerate(levels):
        pending = _submittable(plan, level, train_command, {r.name for r, _ in submitted}, slurm)
        if not pending:
            continue
        if slurm and submitted:  # this level starts once every earlier array ended well
            ids = sorted({str(j.job_id).split("_")[0] for _, j in submitted})
            executor.update_parameters(slurm_dependency="afterok:" + ":".join(ids))
        argvs = [a for _, a in pending]
        logs = [str(plan.out_dir / "logs" / f"{r.name}.log") for r, _ in pending]
        jobs = executor.map_array(_submitit_job, argvs, logs)
        submitted += [(r, j) for (r, _), j in zip(pending, jobs)]
        if not slurm and number < len(levels) - 1:
            _wait_quietly(jobs)  # the next level starts from these runs' weights
    if not submitted:
        return []
    record = plan.out_dir / "submitted.json"
    previous = json.loads(record.read_text()) if record.is_file() else []
    previous.append({"time": time.time(), "cluster": executor.cluster,
                     "jobs": {r.name: j.job_id for r, j in submitted}})
    record.write_text(json.dumps(previous, indent=2))
    jobs = [j for _, j in submitted]
    if wait:
        for job in jobs:
            job.result()
    return jobs


def _levels(plan: SweepPlan) -> list[list[RunSpec]]:
    """The plan's stages and runs by how many stages lie upstream of them (0: none)."""
    def depth(name: str) -> int:
        return 0 if name not in plan.upstream else 1 + depth(plan.upstream[name])

    levels: dict[int, list[RunSpec]] = {}
    for run in plan.all_runs:
        levels.setdefault(depth(run.name), []).append(run)
    return [levels[k] for k in sorted(levels)]


def _submittable(
    plan: SweepPlan, level: list[RunSpec], train_command: Sequence[str] | None,
    submitted: set[str], slurm: bool,
) -> list[tuple[RunSpec, list[str]]]:
    """The runs of ``level`` to submit with their command lines: unfinished, not held by
    another process, and with their upstream stage finished (or, on SLURM, submitted now)."""
    pending = []
    for run in level:
        status = run_status(plan.run_dir(run))
        argv = train_argv(plan, run, train_command, status)
        if argv is None:
            if status.state == "running":
                print(f"{plan.label(run)} {run.name}: {status.detail}, not submitted", file=sys.stderr)
            continue
        upstream = plan.upstream.get(run.name)
        if upstream is not None and not (slurm and upstream in submitted):
            state = run_status(plan.out_dir / upstream).state
            if state != "finished":
                print(f"{plan.label(run)} {run.name}: not submitted: its upstream stage {upstream} "
                      f"has not finished ({state}); submit the sweep again once it has",
                      file=sys.stderr)
                continue
        pending.append((run, argv))
    return pending


def _wait_quietly(jobs: list[Any]) -> None:
    """Wait for ``jobs`` to end; a failure is left to the runs' logs and the next level's check."""
    for job in jobs:
        try:
            job.result()
        except Exception as err:  # noqa: BLE001 - reported through the stage's missing finish
            print(f"warning: job {job.job_id} failed: {str(err).splitlines()[0][:200]}", file=sys.stderr)
