"""Multi-stage runs, inside the trainer: a new run starts from an upstream run's weights.

The ``init`` section of a run config names the upstream run (``init.run``, a finished run
folder; :mod:`disentkit.experiments.stages` trains or finds it when only ``init.preset`` is
given), the submodules to load from it (``init.modules``: ``name`` or ``name=upstream_name``;
empty: every weight whose name both models share), the submodules to freeze (``init.freeze``)
and whether its EMA weights are taken where it has them (``init.use_ema``).

Only a new run reads the upstream run: its final checkpoint (``checkpoints/last.pt``, never an
older ``prev.pt``) is loaded with its checksum verified, the loaded weights must match this
model's by name and shape, and the checkpoint's sha256 and the upstream folder are recorded in
the run's ``config.yaml`` (``init.run``, ``init.sha256``) and ``summary.json`` (``upstream``).
A resumed run has those weights in its own checkpoint: it never opens the upstream run again
(which may since have been moved or deleted); only the freezing is applied again, so the
optimisers are built as before.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from disentkit.config import ConfigError, RunConfig
from disentkit.errors import UserError
from disentkit.training.checkpoint import (
    CHECKPOINT_DIR,
    LAST,
    CheckpointError,
    load_checkpoint_with_digest,
)
from disentkit.training.freezing import freeze_modules


class UpstreamError(UserError, ValueError):
    """The upstream run of a multi-stage run cannot be used (missing, unfinished, damaged,
    changed, or its weights do not fit this model)."""


def _listed(items: list[str], limit: int = 4) -> str:
    """``a, b, c`` with at most ``limit`` items shown (messages stay one bounded line)."""
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


# ---- the upstream run -----------------------------------------------------------------------
def upstream_summary(run_dir: Path) -> dict[str, Any]:
    """The upstream folder's ``summary.json``; UpstreamError unless it is a finished run."""
    run_dir = Path(run_dir)
    path = run_dir / "summary.json"
    if not run_dir.is_dir():
        raise UpstreamError(
            f"init.run: the upstream run {run_dir} does not exist; give a finished run folder "
            "(init.run=RUN_DIR), or init.preset=NAME to train the upstream stage first"
        )
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError):
        summary = None
    if not isinstance(summary, dict):
        raise UpstreamError(
            f"init.run: {run_dir} is not a run folder (no readable summary.json); give a "
            "finished run folder (init.run=RUN_DIR)"
        )
    if summary.get("status") != "finished":
        status, step, steps = summary.get("status", "?"), summary.get("step", "?"), summary.get("steps", "?")
        raise UpstreamError(
            f"init.run: the upstream run {run_dir} has not finished training (status {status} at "
            f"step {step} of {steps}); finish it first with `disentkit train --resume {run_dir}`"
        )
    return summary


def load_upstream(run_dir: Path, sha256: str = "") -> tuple[dict[str, Any], str]:
    """The final training state of a finished upstream run and its checkpoint's sha256.

    Only ``last.pt`` is the upstream's final state (``prev.pt`` is an older step), so a damaged
    ``last.pt`` is an error here rather than a fall-back. ``sha256`` (when given) must match.
    """
    run_dir = Path(run_dir)
    summary = upstream_summary(run_dir)
    path = run_dir / CHECKPOINT_DIR / LAST
    if not path.is_file():
        raise UpstreamError(
            f"init.run: the upstream run {run_dir} has no final checkpoint ({path} is missing); "
            f"resume it with `disentkit train --resume {run_dir}` or train it again"
        )
    try:
        state, digest = load_checkpoint_with_digest(path)
    except CheckpointError as err:
        raise UpstreamError(
            f"init.run: the upstream checkpoint {path} {err.reason.split('; ')[0]}; train the "
            "upstream run again (or give another with init.run=RUN_DIR)"
        ) from err
    if sha256 and digest != sha256:
        raise UpstreamError(
            f"init.sha256: the upstream checkpoint {path} has sha256 {digest[:12]}..., the config "
            f"asks for {sha256[:12]}...: the upstream run changed since; give the run those weights "
            "came from, or clear init.sha256 to start from the current ones"
        )
    if "model" not in state:
        raise UpstreamError(f"init.run: {path} holds no model weights; give a disentkit run folder")
    if summary.get("step") is not None and state.get("step") != summary.get("step"):
        raise UpstreamError(
            f"init.run: {path} is at step {state.get('step')} and {run_dir / 'summary.json'} says "
            f"the run finished at step {summary.get('step')}: its final checkpoint is missing; "
            f"resume it with `disentkit train --resume {run_dir}`"
        )
    return state, digest


def upstream_weights(state: dict[str, Any], use_ema: bool) -> dict[str, torch.Tensor]:
    """The upstream model's weights by name; with ``use_ema`` its EMA copies replace the raw
    weights of the modules it averaged."""
    weights = dict(state["model"])
    if use_ema:
        for name, averaged in (state.get("ema") or {}).items():
            prefix = f"{name}." if name else ""
            for key, value in averaged.items():
                if key.startswith("module."):  # torch AveragedModel's copy of the module
                    weights[prefix + key[len("module."):]] = value
    return weights


# ---- choosing and loading weights -----------------------------------------------------------
def _top_modules(keys: Any) -> list[str]:
    return sorted({k.split(".")[0] for k in keys})


def _under(keys: Any, prefix: str) -> dict[str, str]:
    """``{suffix: key}`` of the keys inside module ``prefix``; a name that is itself a weight (a
    model's own buffer, e.g. ldm's ``scale_factor``) maps as ``{"": name}``."""
    found = {k[len(prefix) + 1:]: k for k in keys if k.startswith(prefix + ".")}
    if prefix in keys:
        found[""] = prefix
    return found


def select_weights(
    expected: dict[str, torch.Tensor], weights: dict[str, torch.Tensor], modules: list[str],
    where: str = "the upstream run",
) -> dict[str, torch.Tensor]:
    """The entries of this model's state dict (``expected``) to take from ``weights``.

    ``modules`` entries are ``name`` (the same module on both sides) or ``name=upstream_name``;
    each must hold the same weights (names and shapes) on both sides. Empty: every weight the
    two share by name, which must then have equal shapes.
    """
    pairs: dict[str, str] = {}  # this model's key -> upstream key
    if not modules:
        pairs = {k: k for k in expected if k in weights}
        if not pairs:
            raise UpstreamError(
                f"init: this model shares no weight name with {where} (its modules: "
                f"{_listed(_top_modules(weights))}; this model's: {_listed(_top_modules(expected))}); "
                "name the modules to load with init.modules=[name=upstream_name]"
            )
    for entry in modules:
        target, _, source = entry.partition("=")
        source = source or target
        mine, theirs = _under(expected, target), _under(weights, source)
        if not mine:
            raise UpstreamError(
                f"init.modules: this model has no module '{target}' with weights; its modules: "
                f"{_listed(_top_modules(expected), 8)}"
            )
        if not theirs:
            raise UpstreamError(
                f"init.modules: {where} has no module '{source}'; its modules: "
                f"{_listed(_top_modules(weights), 8)}"
            )
        missing = sorted(set(mine) - set(theirs))
        extra = sorted(set(theirs) - set(mine))
        if missing or extra:
            what = [f"{target}.{k} is not in the upstream module" for k in missing]
            what += [f"{source}.{k} is not in this model" for k in extra]
            raise UpstreamError(
                f"init.modules: '{entry}' does not match between this model and {where} "
                f"({_listed(what, 2)}); load modules built the same way"
            )
        pairs.update({mine[k]: theirs[k] for k in mine})
    wrong = [f"{k} {list(weights[u].shape)} upstream, {list(expected[k].shape)} here"
             for k, u in pairs.items() if tuple(weights[u].shape) != tuple(expected[k].shape)]
    if wrong:
        raise UpstreamError(
            f"init: the upstream weights do not fit this model's shapes ({_listed(wrong, 2)}); "
            "build both stages with the same settings of those modules (e.g. model.latent_dim)"
        )
    return {k: weights[u] for k, u in pairs.items()}


def load_into(model: nn.Module, chosen: dict[str, torch.Tensor]) -> None:
    """Copy ``chosen`` weights (keys of ``model``'s state dict) into ``model``."""
    state = model.state_dict()
    state.update({k: v.to(dtype=state[k].dtype) for k, v in chosen.items()})
    model.load_state_dict(state)


# ---- freezing -------------------------------------------------------------------------------
def freeze_init_modules(model: nn.Module, names: list[str]) -> None:
    """Freeze ``init.freeze``: no gradients, eval mode kept through ``model.train()`` (see
    :func:`disentkit.training.freezing.freeze_modules`)."""
    try:
        freeze_modules(model, names)
    except ConfigError as err:
        raise ConfigError(f"init.freeze: {err}") from err


# ---- the trainer's entry point --------------------------------------------------------------
def apply_init(model: nn.Module, config: RunConfig, resume: bool) -> RunConfig:
    """Start ``model`` from its upstream run (new runs only) and freeze ``init.freeze``; return
    the config with the upstream folder (resolved) and checkpoint sha256 recorded in ``init``."""
    init = config.init
    if not resume and init.preset and not init.run:
        raise ConfigError(
            f"init.preset = {init.preset!r} names an upstream stage to train first: train through "
            "disentkit.train (or `disentkit train`), which trains or finds it, or set init.run=RUN_DIR"
        )
    needed = tuple(getattr(model, "upstream_modules", ()))
    if not resume and not init.run and needed:
        name = getattr(config.model, "name", type(model).__name__)
        raise ConfigError(
            f"{name} trains on top of a frozen {', '.join(needed)} loaded from an upstream run, and "
            "this config names none: set init.run=RUN_DIR (a finished run of the base model) or "
            f"init.preset=PRESET, as every {name} preset does (disentkit presets {name})")
    if not resume and init.run:
        upstream = Path(init.run).resolve()
        state, digest = load_upstream(upstream, init.sha256)
        weights = upstream_weights(state, init.use_ema)
        load_into(model, select_weights(model.state_dict(), weights, init.modules,
                                        f"the upstream run {upstream}"))
        config = dataclasses.replace(
            config, init=dataclasses.replace(init, run=str(upstream), sha256=digest))
    freeze_init_modules(model, config.init.freeze)
    return config


def summary_fields(config: RunConfig) -> dict[str, Any]:
    """What ``summary.json`` records of the upstream run (nothing for a single-stage run)."""
    init = config.init
    if not init.run:
        return {}
    record = {"run": init.run, "sha256": init.sha256}
    if init.preset:
        record["preset"] = init.preset
    return {"upstream": record}
