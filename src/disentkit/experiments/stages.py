"""Multi-stage runs: finding, training or reusing a run's upstream stage, and ordering stages.

A run whose ``init`` names an upstream preset (``init.preset`` + ``init.overrides``) and no
upstream run (``init.run``) has an *upstream stage*: the run that preset describes, trained in a
sibling folder ``<out_dir>/<its run name>`` beside the run. :func:`resolve_upstream` (called by
:func:`disentkit.train` before a new run trains) reuses that folder when it holds the same run
finished, resumes it when it was interrupted, trains it otherwise, and returns the config with
``init.run`` set to it. Stages chain (an upstream preset may have an upstream of its own); a
chain that comes back to a stage it started from is refused.

:func:`plan_stages` does the same planning for a sweep without training anything: the distinct
upstream stages of its runs (several runs sharing one upstream stage train it once), upstream
stages first, and which stage each run waits for.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from disentkit.config import ConfigError, RunConfig, load_config
from disentkit.training.stages import UpstreamError, upstream_summary

#: the longest chain of stages (a guard against presets that name each other without end)
MAX_STAGES = 8

#: config keys that do not make two runs different runs (where they are, how they log)
_IGNORED = ("out_dir", "data_root", "name", "init.run", "init.sha256")
_IGNORED_SECTIONS = ("log.",)

# Stage folders being trained by this process, innermost last (to refuse a loop).
_ACTIVE: list[Path] = []


@dataclass
class UpstreamStage:
    """A run's upstream stage: the override ``words`` that build its ``config`` and its folder."""

    words: list[str]
    config: RunConfig
    run_dir: Path

    @property
    def name(self) -> str:
        return self.run_dir.name


def upstream_stage(config: RunConfig, parent: Path) -> UpstreamStage | None:
    """The upstream stage ``config`` asks to be trained in folder ``parent`` (its out_dir), or
    None when it has none or names its upstream run itself (``init.run``)."""
    init = config.init
    if init.run or not init.preset:
        return None
    words = [f"preset={init.preset}", *init.overrides]
    if config.data_root and not any(w.startswith("data_root=") for w in init.overrides):
        words.append(f"data_root={config.data_root}")  # the stages read the same data files
    try:
        upstream = load_config(None, words)
    except ConfigError as err:
        raise ConfigError(f"init (the upstream stage {init.preset}): {err}") from err
    upstream = dataclasses.replace(upstream, out_dir=str(parent))
    return UpstreamStage(words, upstream, Path(parent) / upstream.run_name)


def config_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """``key: A vs B`` for the config keys that make ``a`` and ``b`` different runs."""
    from disentkit.viz.report import flatten_leaves

    fa, fb = flatten_leaves(a), flatten_leaves(b)
    keys = [k for k in sorted(fa.keys() | fb.keys())
            if k not in _IGNORED and not k.startswith(_IGNORED_SECTIONS)]
    return [f"{k}: {_short(fa.get(k))} vs {_short(fb.get(k))}" for k in keys
            if _plain(fa.get(k)) != _plain(fb.get(k))]


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:30] + "..."


def _folder_differences(stage: UpstreamStage) -> list[str]:
    """How the run in the stage's folder differs from the stage asked for (empty: the same)."""
    path = stage.run_dir / "config.yaml"
    try:
        there = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return [f"{path} is missing or unreadable"]
    if not isinstance(there, dict):
        return [f"{path} is not a config"]
    return config_differences(there, stage.config.to_dict())


def _check_folder_holds(stage: UpstreamStage) -> None:
    differences = _folder_differences(stage)
    if differences:
        shown = "; ".join(differences[:2]) + (f"; and {len(differences) - 2} more"
                                              if len(differences) > 2 else "")
        raise UpstreamError(
            f"the upstream stage's folder {stage.run_dir} holds another run (there vs asked: "
            f"{shown}); give the upstream stage its own name with init.overrides=[..., name=NAME], "
            f"or start from that run as it is with init.run={stage.run_dir}"
        )


def _holds_run(run_dir: Path) -> bool:
    from disentkit.training.checkpoint import CHECKPOINT_DIR, LAST, PREVIOUS

    return any((Path(run_dir) / CHECKPOINT_DIR / n).exists() for n in (LAST, PREVIOUS))


def _launched_processes() -> bool:
    """Whether a launcher (torchrun, srun) started this process as one of several."""
    from disentkit.run_lock import is_launcher_rank_zero

    return not is_launcher_rank_zero() or os.environ.get("WORLD_SIZE", "1").strip() not in ("", "1")


def _note(message: str) -> None:
    from disentkit.training.distributed import is_global_zero

    if is_global_zero():
        print(f"note: {message}", file=sys.stderr, flush=True)


def resolve_upstream(config: RunConfig, run_dir: Path) -> RunConfig:
    """Before a new run trains into ``run_dir``: make sure its upstream run exists and finished.

    With ``init.run`` that folder must hold a finished run. With only ``init.preset`` the upstream
    stage is found in ``<run_dir's parent>/<its name>`` (reused when finished there, resumed when
    interrupted) or trained there, and the returned config names it in ``init.run``. A run folder
    that already holds a run is left to :func:`disentkit.training.engine.run_training` to refuse.
    """
    run_dir = Path(run_dir)
    if _holds_run(run_dir) or not (config.init.run or config.init.preset):
        return config
    if config.init.run:
        upstream_summary(Path(config.init.run))  # one clear line before anything starts
        return config
    stage = upstream_stage(config, run_dir.parent)
    assert stage is not None
    if stage.run_dir.resolve() == run_dir.resolve():
        raise ConfigError(
            f"init: the upstream stage {config.init.preset} would train into this run's own folder "
            f"{run_dir}; give one of them another name (name=... or init.overrides=[name=...])"
        )
    chain = [*_ACTIVE, run_dir.resolve()]
    if stage.run_dir.resolve() in chain or len(chain) >= MAX_STAGES:
        names = " -> ".join(p.name for p in [*chain, stage.run_dir])
        raise ConfigError(f"init: the chain of upstream stages does not end ({names}); make the "
                          "first stage's preset name no init.preset")
    _ensure_finished(stage, chain)
    return dataclasses.replace(config, init=dataclasses.replace(config.init, run=str(stage.run_dir)))


def _ensure_finished(stage: UpstreamStage, chain: list[Path]) -> None:
    """Reuse, resume or train the upstream stage so that its folder holds it finished."""
    from disentkit.experiments.sweep import run_status

    status = run_status(stage.run_dir)
    if status.state == "finished":
        _check_folder_holds(stage)
        _note(f"starting from the finished upstream stage {stage.run_dir}")
        return
    if status.state == "running":
        raise UpstreamError(
            f"the upstream stage {stage.run_dir} is {status.detail}; wait for it to finish and "
            "run this command again"
        )
    if _launched_processes():
        raise UpstreamError(
            f"the upstream stage {stage.run_dir} has not finished ({status.state}), and this "
            "process is one of several a launcher started, which cannot train it alone; train it "
            f"first (`disentkit train {' '.join(stage.words)} out_dir={stage.run_dir.parent}`) "
            "or set init.run=RUN_DIR"
        )
    resume = status.state == "resume"
    if resume:
        _check_folder_holds(stage)
    _note(f"{'resuming' if resume else 'training'} the upstream stage {stage.run_dir} first "
          f"({' '.join(stage.words)})")
    import disentkit.api

    _ACTIVE.append(chain[-1])
    try:
        disentkit.api.train(stage.config, stage.run_dir, resume=resume)
    finally:
        _ACTIVE.pop()
    upstream_summary(stage.run_dir)  # it stopped early (a stop signal): say so, start nothing


# ---- sweeps ---------------------------------------------------------------------------------
def plan_stages(
    runs: Sequence[tuple[str, RunConfig]], out_dir: Path,
) -> tuple[list[UpstreamStage], dict[str, str]]:
    """The upstream stages of a sweep's ``(name, config)`` runs in folder ``out_dir``.

    Returns the distinct stages, each after the stage it starts from, and ``{name: stage
    name}`` for every run and stage that has one. Two runs whose upstream stages share a
    folder name but not a config are refused (one would start from the other's weights).
    """
    stages: dict[str, UpstreamStage] = {}
    upstream_of: dict[str, str] = {}

    def visit(name: str, config: RunConfig, chain: list[str]) -> None:
        stage = upstream_stage(config, Path(out_dir))
        if stage is None:
            return
        if stage.name in chain or len(chain) >= MAX_STAGES:
            raise ConfigError(f"init: the chain of upstream stages does not end "
                              f"({' -> '.join([*chain, stage.name])}); make the first stage's "
                              "preset name no init.preset")
        upstream_of[name] = stage.name
        known = stages.get(stage.name)
        if known is not None:
            differences = config_differences(known.config.to_dict(), stage.config.to_dict())
            if differences:
                raise ConfigError(
                    f"init: two runs ask for different upstream stages named {stage.name} "
                    f"({differences[0]}); give them distinct names with init.overrides=[..., name=NAME]"
                )
            return
        visit(stage.name, stage.config, [*chain, stage.name])
        stages[stage.name] = stage  # after its own upstream: dicts keep insertion order

    for name, config in runs:
        visit(name, config, [name])
    return list(stages.values()), upstream_of
