"""The Python API: ``train(config)``, ``load_run(path)``.

    import disentkit
    run_dir = disentkit.train(disentkit.config.load_config("betavae/sprites", ["seed=1"]))
    model, config = disentkit.load_run(run_dir)
    codes = model.encode(images)          # float NCHW in [0, 1] -> (n, latent_dim)
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from disentkit.config import (
    RunConfig,
    check_config,
    config_from_dict,
    load_config,
    load_config_file,
)


@dataclass
class LoadedRun:
    """A trained run: ``model`` (eval mode), its ``config`` and ``path``; unpacks as (model, config)."""

    model: torch.nn.Module
    config: RunConfig
    path: Path

    def __iter__(self):
        return iter((self.model, self.config))

    def data(self) -> Any:
        """Build the run's dataset (from its config's data section and data root)."""
        from disentkit.builders import build_dataset

        return build_dataset(self.config)


def _as_config(config: RunConfig | dict[str, Any] | str) -> RunConfig:
    if isinstance(config, RunConfig):
        check_config(config)  # a config changed in Python after loading: ranges, name
        return config
    if isinstance(config, dict):
        return config_from_dict(config)
    return load_config(config)


def train(
    config: RunConfig | dict[str, Any] | str,
    run_dir: str | Path | None = None,
    resume: bool = False,
) -> Path:
    """Train a run (a :class:`RunConfig`, a plain dict, or a preset name); evaluate it and write
    its report when the config asks for it; return the run directory.

    The run directory's lock (:mod:`disentkit.run_lock`) is held from before training until the
    report is written, so ``disentkit sweep`` and a second trainer can tell this live run from a
    crashed one; a run another live process holds raises :class:`~disentkit.run_lock.RunLockedError`.

    A new run whose ``init`` names an upstream preset and no upstream run first trains that
    upstream stage beside it, or reuses or resumes it there
    (:func:`disentkit.experiments.stages.resolve_upstream`); a resumed run never reads its
    upstream run again.
    """
    from disentkit.run_lock import RunLock, is_launcher_rank_zero
    from disentkit.training.engine import run_training

    config = _as_config(config)
    path = Path(run_dir) if run_dir else Path(config.out_dir) / config.run_name
    # Only the launcher's rank 0 takes the lock; the other ranks of a DDP run train under it.
    with RunLock(path, enabled=is_launcher_rank_zero()):
        if not resume:
            from disentkit.experiments.stages import resolve_upstream

            config = resolve_upstream(config, path)
        run_training(config, path, resume=resume)
        finish_run(path, config)
    return path


def finish_run(path: Path, config: RunConfig) -> None:
    """After training: evaluation and report on the main process (see ``eval``/``log`` sections)."""
    import json

    from disentkit.training.checkpoint import write_text_atomic
    from disentkit.training.distributed import is_global_zero

    if not is_global_zero():
        return
    summary = json.loads((path / "summary.json").read_text())
    if summary.get("status") != "finished":
        return
    if config.eval.at_end and config.eval.metrics:
        from disentkit.evaluation import UnscorableDataError, evaluate_run

        try:
            evaluate_run(path, quiet=True)
        except UnscorableDataError as err:
            # Failing here would lose nothing trained but would end a finished run in an error
            # (and make a sweep retry it forever); the skip is recorded for `disentkit sweep`.
            note = (f"{err}. The evaluation at the end (eval.at_end) was skipped; set "
                    "eval.at_end=false for such data.")
            print(f"note: {note}", file=sys.stderr)
            summary["evaluation"] = f"skipped: {note}"
            write_text_atomic(path / "summary.json", json.dumps(summary, indent=2))
    if config.eval.report_at_end:
        try:
            from disentkit.viz.report import write_report
        except ImportError:
            return
        write_report(path)


def _data_facts(state: dict[str, Any]) -> Any:
    """The DataFacts a checkpoint recorded (image shape and dataset size in older ones)."""
    from disentkit.models.base import DataFacts

    if isinstance(state.get("data_facts"), dict):
        return DataFacts.from_dict(state["data_facts"])
    return DataFacts(tuple(state["image_shape"]), int(state.get("dataset_size", 0)))


def load_run(
    path: str | Path, use_ema: bool = True, device: str | torch.device = "cpu",
    trust_imports: bool = False,
) -> LoadedRun:
    """Load a run directory's config and final (or latest) weights; EMA weights when present.

    The modules the run's config lists under ``imports`` are imported only with
    ``trust_imports=True`` (they run code from wherever the folder came from); without it a
    module not imported yet raises :class:`disentkit.config.UntrustedImportsError`.
    """
    from disentkit.builders import build_model
    from disentkit.training.checkpoint import CHECKPOINT_DIR, CheckpointError, load_latest
    from disentkit.training.ema import EMA

    path = Path(path)
    config_path = path / "config.yaml"
    if not config_path.is_file():
        raise FileNotFoundError(f"{path} is not a run directory (no config.yaml)")
    config = load_config_file(config_path, trust_imports=trust_imports)
    # The newest intact checkpoint: last.pt, or prev.pt (with a warning) when last.pt is
    # missing or fails its checksum; CheckpointError when neither is intact.
    state, checkpoint = load_latest(path / CHECKPOINT_DIR)
    model = build_model(config, _data_facts(state))
    try:
        model.load_state_dict(state["model"])
        if use_ema and "ema" in state:
            EMA.copy_into(model, state["ema"])
    except (RuntimeError, KeyError) as err:  # config.yaml edited to another architecture
        first = (str(err).splitlines() or [repr(err)])[0][:300]
        raise CheckpointError(
            f"{checkpoint} does not fit the model {config_path} describes ({first}); restore the "
            "run's model settings in config.yaml"
        ) from err
    model.to(device).eval()
    return LoadedRun(model=model, config=config, path=path)
