"""The Python API: ``train(config)``, ``load_run(path)``.

    import disentkit
    run_dir = disentkit.train(disentkit.config.load_config("betavae/sprites", ["seed=1"]))
    model, config = disentkit.load_run(run_dir)
    codes = model.encode(images)          # float NCHW in [0, 1] -> (n, latent_dim)
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from disentkit.config import (
    RunConfig,
    check_config,
    config_from_dict,
    load_config,
)
from disentkit.run_loading import LoadedRun, load_run  # noqa: F401  (part of the API)


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


def _training_device(config: RunConfig) -> str:
    """``cuda`` when the run trained on a GPU (``accelerator`` cuda, or auto with one present)."""
    import torch

    accelerator = config.train.accelerator
    cuda = accelerator == "cuda" or (accelerator == "auto" and torch.cuda.is_available())
    return "cuda" if cuda else "cpu"


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
            # on the training device: the metrics' encoder runs there in large batches
            evaluate_run(path, quiet=True, device=_training_device(config))
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
