"""The training loop, on Lightning Fabric (devices, precision, DDP over processes and nodes).

One step: draw indices -> uint8 batch -> device -> float -> ``model.training_losses`` -> one
backward -> per-optimiser gradient clipping and step -> LR schedules -> EMA. With
``train.accumulate = k`` a step runs k micro-batches of ``train.batch_size`` images, each loss
divided by k and back-propagated (the gradients add up to those of the mean loss over the k
micro-batches; with DDP only the last one synchronises), then steps once: for a model whose loss
is a mean over the batch this is the update of one k-times larger batch, drawn from the same
indices. Logging every
``log.every`` steps to ``metrics.jsonl`` (and TensorBoard), checkpoints every
``train.checkpoint_every`` steps and at the end, written atomically with a checksum; the one before
is kept as ``prev.pt`` (:mod:`disentkit.training.checkpoint`).

"Last good" checkpoint: the state at step ``k`` is serialised at the step boundary but written only
once the loss of step ``k`` (computed from exactly those weights) is finite, so a NaN stop never
leaves behind a checkpoint taken after the exploding update. Checkpoints written without a next
step (end of run, stop signal) are written only when every weight is finite.

Resume loads the newest intact checkpoint and checks that it fits the (possibly overridden) config
before anything in the run folder is written. Learning rate, betas, eps and weight decay come
from the config: when they differ from the checkpoint's optimiser state, the config wins and a
note says so (the advice of the NaN stop relies on this); ``train.grad_clip`` is always read from
the config.

Exact resume: a checkpoint holds the model, every optimiser and schedule, the EMA, the batch
sampler's generator and every process's torch RNG state, taken at a step boundary. Resuming from
it replays the remaining steps with the same batches and the same noise, so (on CPU) the final
weights equal those of an uninterrupted run.

Frozen sub-modules (the model's ``frozen_modules`` and the ``freeze`` names a caller passes,
:mod:`disentkit.training.freezing`) are frozen before the optimisers are built: they are in no
optimiser and stay in eval mode. The EMA averages ``train.ema_modules``, or the modules the model
declares (``Model.ema_modules``), or the whole model. ``log.images_every`` writes sample grids
(:mod:`disentkit.training.samples`) with the EMA weights.

torchrun and SLURM launches are detected by Fabric from their environment variables; with
``train.devices > 1`` and no launcher, Fabric starts the processes itself.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

import torch

from disentkit.builders import build_dataset, build_model, to_model_input
from disentkit.config import ConfigError, RunConfig
from disentkit.models.base import DataFacts, Model, OptimiserSpec
from disentkit.training.checkpoint import (
    CHECKPOINT_DIR,
    LAST,
    PREVIOUS,
    CheckpointError,
    DiskFullError,
    encode_checkpoint,
    is_disk_full,
    load_latest,
    remove_orphaned_temporaries,
    warn,
    write_checkpoint,
    write_text_atomic,
    write_text_best_effort,
)
from disentkit.training.cpu_memory import tune_glibc_malloc
from disentkit.training.distributed import (
    close_process_group,
    gather_rows,
    process_group_ready,
    remember_rank,
)
from disentkit.training.ema import EMA
from disentkit.training.finite import FiniteWatch
from disentkit.training.freezing import freeze_modules, model_frozen_modules
from disentkit.training.loggers import JsonlLogger, TensorBoardLogger
from disentkit.training.sampler import BatchSampler
from disentkit.training.samples import check_can_sample, sample_grid_path, write_sample_grid
from disentkit.training.schedule import lr_multiplier
from disentkit.training.stages import apply_init, summary_fields

PRECISION = {"32": "32-true", "bf16-mixed": "bf16-mixed", "16-mixed": "16-mixed"}


class NonFiniteLossError(RuntimeError):
    """The loss (or, at a checkpoint without a next step, a weight) became NaN or infinite; the
    last good checkpoint was kept."""


#: the optimiser settings a config sets; on resume the config's values replace the checkpoint's
_CONFIGURED = ("lr", "betas", "eps", "weight_decay")


def _note(message: str) -> None:
    from disentkit.training.distributed import is_global_zero

    if is_global_zero():
        print(f"note: {message}", file=sys.stderr, flush=True)


def _plain(value: Any) -> Any:
    return tuple(value) if isinstance(value, (list, tuple)) else value


def _changed_keys(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Dotted config keys whose value differs between two config dicts."""
    from disentkit.viz.report import flatten_leaves

    a, b = flatten_leaves(before), flatten_leaves(after)
    return sorted(k for k in a.keys() | b.keys() if _plain(a.get(k)) != _plain(b.get(k)))


def _listed(items: list[str], limit: int = 4) -> str:
    """``a, b, c`` with at most ``limit`` items shown (messages stay one bounded line)."""
    return ", ".join(items[:limit]) + (f" and {len(items) - limit} more" if len(items) > limit else "")


#: ``optim.name`` -> the torch optimiser (RAdam: Liu et al. 2020, FDAE's optimiser)
OPTIMISERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "radam": torch.optim.RAdam}


def _make_optimiser(spec: OptimiserSpec, config: RunConfig) -> torch.optim.Optimizer:
    optim = config.optim
    kwargs = {
        "lr": spec.lr if spec.lr is not None else optim.lr,
        "betas": tuple(spec.betas if spec.betas is not None else optim.betas),
        "eps": spec.eps if spec.eps is not None else optim.eps,
        "weight_decay": spec.weight_decay if spec.weight_decay is not None else optim.weight_decay,
    }
    # foreach / fused: the same update computed with fewer kernels (fused: one per step)
    if optim.foreach is not None:
        kwargs["foreach"] = optim.foreach
    if optim.fused:
        kwargs["fused"] = True
    return OPTIMISERS[optim.name](spec.param_groups, **kwargs)


def _compiled_losses(model: Any, config: RunConfig) -> Any:
    """``model.training_losses`` through ``torch.compile`` (``train.compile_mode``;
    ``reduce-overhead`` replays CUDA graphs, which suits small models whose steps are short).
    Random draws inside the compiled code keep torch's own generator (inductor's ``fallback_random``):
    inductor's faster generator would draw other noise than an eager run of the same seed."""
    import torch._inductor.config as inductor_config

    inductor_config.fallback_random = True
    return torch.compile(model.training_losses, mode=config.train.compile_mode)


def trainable_specs(specs: list[OptimiserSpec], model_name: str = "the model") -> list[OptimiserSpec]:
    """``specs`` without the parameters that do not train (frozen ones): empty groups and
    optimisers left without parameters are dropped. ConfigError when nothing is left."""
    kept = []
    for spec in specs:
        groups = [{**g, "params": [p for p in g["params"] if p.requires_grad]} for g in spec.param_groups]
        groups = [g for g in groups if g["params"]]
        if groups:
            kept.append(replace(spec, param_groups=groups))
    if not kept:
        raise ConfigError(f"every parameter of {model_name} is frozen, so nothing would train; "
                          "freeze fewer modules")
    return kept


def _mean_scalars(micro: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The logged terms of one step: those of its only batch, or their mean over the
    micro-batches of an accumulated step."""
    if len(micro) == 1:
        return micro[0]
    # a term that some micro-batch did not log is averaged over those that did
    keys = dict.fromkeys(k for m in micro for k in m)
    return {key: torch.stack([m[key] for m in micro if key in m]).mean() for key in keys}


def _scalars(losses: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Flatten logged terms: scalars as they are, vectors as ``name/i``."""
    out: dict[str, torch.Tensor] = {}
    for key, value in losses.items():
        if not isinstance(value, torch.Tensor):
            value = torch.tensor(float(value))
        value = value.detach().float()
        if value.ndim == 0:
            out[key] = value
        else:
            for i, v in enumerate(value.reshape(-1)):
                out[f"{key}/{i}"] = v
    return out


class Trainer:
    """Owns one run: its Fabric, model, optimisers, data and run directory."""

    def __init__(self, config: RunConfig, run_dir: Path, resume: bool = False,
                 freeze: Sequence[str] = ()) -> None:
        """``freeze``: sub-modules to freeze besides those the model declares (dotted names)."""
        from lightning_fabric import Fabric

        self.config = config
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.extra_frozen = list(freeze)
        train = config.train
        if train.num_threads:
            torch.set_num_threads(train.num_threads)
        if train.cpu_malloc_tuning and train.accelerator == "cpu":
            tune_glibc_malloc()
        strategy: Any = train.strategy
        self.fabric = Fabric(
            accelerator=train.accelerator,
            devices=train.devices,
            num_nodes=train.num_nodes,
            strategy=strategy,
            precision=PRECISION[train.precision],
        )
        self._stop_requested = False
        #: the step of the newest checkpoint on disk (None: none yet)
        self._saved_step: int | None = None

    # ------------------------------------------------------------------------------------------
    def _setup(self) -> None:
        fabric, config = self.fabric, self.config
        fabric.launch()
        remember_rank(fabric.global_rank)
        torch.manual_seed(config.seed)  # identical initial weights on every process
        self.data = build_dataset(config)
        self.data_facts = DataFacts.of(self.data)
        if config.train.data_on_device:
            self._put_data_on_device()
        self.image_shape = self.data_facts.image_shape
        model: Model = build_model(config, self.data_facts)
        check_can_sample(model, config.log.images_every)
        # before the optimisers exist, so that frozen parameters are in none of them
        self.frozen = freeze_modules(model, [*model_frozen_modules(model), *self.extra_frozen])
        # Multi-stage runs: a new run starts from its upstream run's weights (recorded in
        # init.run / init.sha256); init.freeze applies on resume too, so the optimisers match.
        self.config = config = apply_init(model, config, resume=self.resume)
        if config.train.channels_last:
            # NHWC weights and activations (faster convolutions on tensor cores); same values
            model.to(memory_format=torch.channels_last)
        specs = trainable_specs(model.optimiser_specs(), config.model.name)
        optimisers = [_make_optimiser(spec, config) for spec in specs]
        wrapped = fabric.setup(model, *optimisers)
        self.model, self.optimisers = wrapped[0], list(wrapped[1:])
        self.model.mark_forward_method("training_losses")
        self.raw_model: Model = self.model.module
        self._losses = _compiled_losses(self.model, config) if config.train.compile \
            else self.model.training_losses
        self.multiplier = lr_multiplier(config.lr_schedule, config.train.steps)
        self.schedulers = [
            torch.optim.lr_scheduler.LambdaLR(opt.optimizer, self.multiplier) for opt in self.optimisers
        ]
        ema_names = list(config.train.ema_modules) or list(getattr(model, "ema_modules", ()))
        self.ema = (
            EMA(self.raw_model, config.train.ema_decay, ema_names, warmup=config.train.ema_warmup)
            if config.train.ema_decay else None
        )
        world = fabric.world_size
        per_process = config.train.batch_size * self.raw_model.batch_multiplier
        # one draw per step holds every micro-batch: (accumulate, world, per_process) indices
        self.sampler = BatchSampler(len(self.data), per_process * world * config.train.accumulate,
                                    config.seed)
        # Distinct noise per process, reproducible from (seed, rank).
        torch.manual_seed(config.seed * 100_003 + fabric.global_rank + 1)
        self.step = 0
        # seconds in the training loop, carried across resumes in the checkpoint (the report's wall time)
        self.train_time_s = 0.0

    def _put_data_on_device(self) -> None:
        """Keep the whole uint8 dataset on the training device (batches are then gathered there,
        bit-identical to those from host memory), if it can be and fits in half the free memory."""
        name, device = self.config.data.name, self.fabric.device
        if not hasattr(self.data, "to") or getattr(self.data, "deterministic_observations", True) is False:
            raise ConfigError(
                f"train.data_on_device = true: dataset '{name}' draws fresh randomness for every "
                "observation, so there is no fixed set of images to keep on the device; set "
                "train.data_on_device=false"
            )
        need = len(self.data) * math.prod(self.data_facts.image_shape)
        if device.type == "cuda":
            free = torch.cuda.mem_get_info(device)[0]
            if need > free // 2:
                raise ConfigError(
                    f"train.data_on_device = true: dataset '{name}' needs {need / 2**30:.2f} GiB "
                    f"as uint8 and the device has {free / 2**30:.2f} GiB free (at most half of it "
                    "is used for data); set train.data_on_device=false (batches then come from "
                    "host memory)"
                )
        self.data.to(device)

    def _state(self) -> dict[str, Any]:
        rng = torch.get_rng_state()
        rngs = gather_rows(rng.to(self.fabric.device)).cpu() if self.fabric.world_size > 1 \
            else rng.unsqueeze(0)
        state: dict[str, Any] = {
            "step": self.step,
            "train_time_s": self.train_time_s,
            "image_shape": list(self.image_shape),
            "dataset_size": len(self.data),
            "data_facts": self.data_facts.to_dict(),
            "model": self.raw_model.state_dict(),
            "optimisers": [opt.optimizer.state_dict() for opt in self.optimisers],
            "schedulers": [s.state_dict() for s in self.schedulers],
            "sampler": self.sampler.state_dict(),
            "torch_rng": rngs.reshape(self.fabric.world_size, -1),
            # recorded so that a resume can say when the config changed it
            "grad_clip": self.config.train.grad_clip,
        }
        if torch.cuda.is_available() and self.fabric.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.fabric.device)
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        return state

    def _load_state(self, state: dict[str, Any]) -> None:
        configured = self._configured_settings()
        self.raw_model.load_state_dict(state["model"])
        if len(state["optimisers"]) != len(self.optimisers):
            raise ValueError(f"the checkpoint has {len(state['optimisers'])} optimisers, the "
                             f"config's model {len(self.optimisers)}")
        for opt, opt_state in zip(self.optimisers, state["optimisers"]):
            opt.optimizer.load_state_dict(opt_state)
        for sched, sched_state in zip(self.schedulers, state["schedulers"]):
            sched.load_state_dict(sched_state)
        self.sampler.load_state_dict(state["sampler"])
        rngs = state["torch_rng"]
        rank = self.fabric.global_rank
        if rank >= rngs.shape[0]:
            raise ValueError(
                f"the checkpoint was written by {rngs.shape[0]} processes; resuming with "
                f"{self.fabric.world_size} cannot replay the same noise. Resume with the same "
                "train.devices and train.num_nodes."
            )
        torch.set_rng_state(rngs[rank].to(torch.uint8))
        if "cuda_rng" in state and self.fabric.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], self.fabric.device)
        if self.ema is not None and "ema" in state:
            self.ema.load_state_dict(state["ema"])
        self.step = int(state["step"])
        self.train_time_s = float(state.get("train_time_s", 0.0))
        self._apply_configured_settings(configured, state)

    def _configured_settings(self) -> list[list[dict[str, Any]]]:
        """Per optimiser and parameter group, the settings the config asks for (``lr`` is the
        schedule's base rate)."""
        return [
            [{**{k: group[k] for k in _CONFIGURED if k in group}, "lr": base}
             for group, base in zip(opt.optimizer.param_groups, sched.base_lrs)]
            for opt, sched in zip(self.optimisers, self.schedulers)
        ]

    def _apply_configured_settings(self, configured: list[list[dict[str, Any]]],
                                   state: dict[str, Any]) -> None:
        """Let the config's optimiser settings win over the loaded optimiser state (a user who
        lowered optim.lr after a NaN stop gets the lower rate), with a note naming the changes."""
        changes = []
        for i, (opt, sched, wanted) in enumerate(zip(self.optimisers, self.schedulers, configured)):
            groups = opt.optimizer.param_groups
            saved = [{**{k: g[k] for k in _CONFIGURED if k in g}, "lr": base}
                     for g, base in zip(groups, sched.base_lrs)]
            if [{k: _plain(v) for k, v in g.items()} for g in saved] == \
                    [{k: _plain(v) for k, v in g.items()} for g in wanted]:
                continue
            for j, (group, old, new) in enumerate(zip(groups, saved, wanted)):
                changes += [f"{k} {_plain(old.get(k))} -> {_plain(v)} (optimiser {i}, group {j})"
                            for k, v in new.items() if _plain(old.get(k)) != _plain(v)]
                group.update({k: v for k, v in new.items() if k != "lr"})
                group["initial_lr"] = new["lr"]
                group["lr"] = new["lr"] * self.multiplier(sched.last_epoch)
            sched.base_lrs = [g["lr"] for g in wanted]
            sched._last_lr = [g["lr"] for g in groups]  # what get_last_lr() reports
        if changes:
            _note(f"the config's optimiser settings replace the checkpoint's: {_listed(changes)}")
        saved_clip = state.get("grad_clip", self.config.train.grad_clip)
        if saved_clip != self.config.train.grad_clip:
            _note(f"train.grad_clip {saved_clip} -> {self.config.train.grad_clip} (from the config)")

    def _resume(self) -> Path | None:
        """Load the newest intact checkpoint, refusing one that does not fit the config; nothing
        in the run folder is written here. Returns the damaged last.pt fallen back from, if any."""
        directory = self.run_dir / CHECKPOINT_DIR
        state, path = load_latest(directory)
        self._check_model_fits(state["model"], path)
        try:
            self._load_state(state)
        except (RuntimeError, ValueError, KeyError, IndexError, TypeError) as err:
            keys = self._changed_config_keys()
            changed = f" (the config changes {_listed(keys)})" if keys else ""
            raise CheckpointError(
                f"cannot resume {self.run_dir} from {path}{changed}: "
                f"{(str(err).splitlines() or [repr(err)])[0][:300]}; nothing in the run folder was changed"
            ) from err
        self._saved_step = self.step
        damaged = directory / LAST
        return damaged if path.name != LAST and damaged.exists() else None

    def _changed_config_keys(self) -> list[str]:
        """The config keys this run's config changes against its config.yaml."""
        import yaml

        try:
            before = yaml.safe_load((self.run_dir / "config.yaml").read_text()) or {}
        except (OSError, yaml.YAMLError):
            return []
        return _changed_keys(before, self.config.to_dict()) if isinstance(before, dict) else []

    def _check_model_fits(self, saved: dict[str, torch.Tensor], path: Path) -> None:
        """CheckpointError naming the config keys when the config builds a differently shaped model."""
        expected = self.raw_model.state_dict()
        problems = [f"{k} {list(saved[k].shape)} -> {list(v.shape)}" for k, v in expected.items()
                    if k in saved and tuple(saved[k].shape) != tuple(v.shape)]
        problems += [f"{k} is new" for k in expected if k not in saved]
        problems += [f"{k} is gone" for k in saved if k not in expected]
        if problems:
            keys = [k for k in self._changed_config_keys() if k.split(".")[0] in ("model", "data")]
            what = f"changing {_listed(keys)}" if keys else "the config"
            raise CheckpointError(
                f"cannot resume {self.run_dir}: {what} changes the model's shape against {path} "
                f"({_listed(problems, 3)}); a resumed run keeps its model: drop those overrides "
                "(nothing in the run folder was changed), or train a new run with another name="
            )

    def _snapshot(self) -> list[bytes] | None:
        """The encoded training state now (every rank takes part in the RNG gather; rank 0 encodes)."""
        state = self._state()
        return encode_checkpoint(state) if self.fabric.is_global_zero else None

    def _write_snapshot(self, chunks: list[bytes] | None, step: int) -> None:
        if self.fabric.is_global_zero:
            assert chunks is not None
            write_checkpoint(chunks, self.run_dir / CHECKPOINT_DIR)
        self.fabric.barrier()
        self._saved_step = step

    def save_checkpoint(self, chunks: list[bytes] | None = None) -> None:
        """Write the state of this step boundary (``chunks`` when already encoded) as last.pt,
        unless a weight is not finite: nothing checks these weights with a next step."""
        finite = torch.stack([torch.isfinite(p.detach()).all() for p in self.raw_model.parameters()])
        finite = finite.all().float()
        if self.fabric.world_size > 1:
            finite = self.fabric.all_reduce(finite, reduce_op="min")
        if finite.item() < 1.0:
            self._stop_non_finite(f"the update of step {self.step - 1} made some weights non-finite")
        self._write_snapshot(chunks if chunks is not None else self._snapshot(), self.step)

    def _stop_non_finite(self, what: str) -> NoReturn:
        """Mark the run failed and raise the NaN stop, with advice that works."""
        self._write_summary("failed", best_effort=True, error=what[:300])
        run_dir, lr = self.run_dir, self.config.optim.lr
        lower = f"optim.lr={lr / 10:g}"
        now_clip = self.config.train.grad_clip
        clip = f"a smaller train.grad_clip (now {now_clip:g})" if now_clip else \
            "train.grad_clip set (e.g. train.grad_clip=1.0)"
        if self._saved_step is None:
            where = (f"no checkpoint was written yet (the first was due at step "
                     f"{self.config.train.checkpoint_every}), so nothing is lost: run the same "
                     f"`disentkit train` command again with a lower learning rate, e.g. adding "
                     f"{lower} (now {lr:g}), or with {clip}, or check the data")
        else:
            where = (f"the last good checkpoint, {run_dir / CHECKPOINT_DIR / LAST} (step "
                     f"{self._saved_step}), is kept: resume with a lower learning rate, e.g. "
                     f"`disentkit train --resume {run_dir} {lower}` (now {lr:g}), or with {clip}, "
                     f"given like that or set in {run_dir / 'config.yaml'} (the resumed run uses "
                     "the config's values), or check the data")
        raise NonFiniteLossError(f"{what}. Training stopped; {where}.")

    def _write_summary(self, status: str, best_effort: bool = False, **extra: Any) -> None:
        """Write summary.json; ``best_effort`` (a run that is failing) never raises an OSError."""
        if not self.fabric.is_global_zero:
            return
        summary = {"status": status, "step": self.step, "steps": self.config.train.steps,
                   "train_time_s": round(self.train_time_s, 1), **summary_fields(self.config), **extra}
        text = json.dumps(summary, indent=2)
        if best_effort:
            write_text_best_effort(self.run_dir / "summary.json", text)
        else:
            write_text_atomic(self.run_dir / "summary.json", text)

    def _request_stop(self, signum: int, frame: Any) -> None:  # pragma: no cover - signal path
        self._stop_requested = True

    def _request_stop_or_abort(self, signum: int, frame: Any) -> None:  # pragma: no cover - signal path
        """Ctrl-C: the first stops at the end of the step with a checkpoint; a second one aborts
        at once (the last checkpoint written is kept)."""
        if self._stop_requested:
            raise KeyboardInterrupt
        self._stop_requested = True

    def _resume_hint(self) -> str:
        import shlex

        return f"disentkit train --resume {shlex.quote(str(self.run_dir))}"

    def _say_stopped(self) -> None:
        """Where an interrupted run stopped and the command that continues it."""
        if not self.fabric.is_global_zero:
            return
        if self._saved_step == self.step:
            where = f"stopped at step {self.step}/{self.config.train.steps} (checkpoint saved)"
        elif self._saved_step is not None:
            where = (f"stopped at step {self.step}/{self.config.train.steps}; the last checkpoint "
                     f"is that of step {self._saved_step}")
        else:
            print(f"stopped at step {self.step}/{self.config.train.steps} before the first "
                  "checkpoint; run the same command again to start over", file=sys.stderr, flush=True)
            return
        print(f"{where}; resume with: {self._resume_hint()}", file=sys.stderr, flush=True)

    # ------------------------------------------------------------------------------------------
    def fit(self) -> Path:
        self._setup()
        # Everything that can refuse the resume happens before the run folder is touched.
        damaged = self._resume() if self.resume else None
        try:
            self._prepare_folder(damaged)
            self._fit_loop()
        except NonFiniteLossError:
            raise  # summary.json already says why
        except BaseException as err:
            self._fail(err)
        return self.run_dir

    def _prepare_folder(self, damaged: Path | None) -> None:
        import yaml

        if self.fabric.is_global_zero:
            for path in remove_orphaned_temporaries(self.run_dir):
                _note(f"removed {path}, a temporary file left by a process killed while writing it")
            if damaged is not None:
                # Out of the way, so the next checkpoint does not rotate it into prev.pt.
                aside = damaged.with_name(LAST + ".damaged")
                damaged.replace(aside)
                warn(f"the damaged checkpoint was moved to {aside}")
            (self.run_dir / CHECKPOINT_DIR).mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.run_dir / "config.yaml",
                              yaml.safe_dump(self.config.to_dict(), sort_keys=False))
        self.fabric.barrier()

    def _fit_loop(self) -> None:
        fabric, config = self.fabric, self.config
        loggers: list[Any] = []
        previous_handlers: dict[int, Any] = {}
        try:
            if fabric.is_global_zero:
                loggers.append(JsonlLogger(self.run_dir / "metrics.jsonl",
                                           self.step if self.resume else None))
                if config.log.tensorboard:
                    loggers.append(TensorBoardLogger(self.run_dir / "tensorboard"))
            if sys.platform != "win32" and _in_main_thread():
                # SLURM sends SIGUSR1/SIGTERM before pre-emption: checkpoint at the next step boundary.
                for sig in (signal.SIGUSR1, signal.SIGTERM):
                    previous_handlers[sig] = signal.signal(sig, self._request_stop)
                if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                    previous_handlers[signal.SIGINT] = signal.signal(signal.SIGINT,
                                                                     self._request_stop_or_abort)
            self._write_summary("running")
            self._loop(loggers)
        finally:
            for logger in loggers:
                logger.close()
            # Outside the loop nothing polls the stop flag: give the signals back to their previous
            # handlers so a SIGTERM during the end-of-run evaluation (or in a notebook) ends the process.
            for sig, handler in previous_handlers.items():
                signal.signal(sig, handler)

    def _fail(self, err: BaseException) -> NoReturn:
        """Mark the run failed in summary.json (best effort: the disk may be full) and raise;
        a full disk becomes one line saying what was kept and how to go on."""
        reason = f"{type(err).__name__}: {(str(err).splitlines() or [''])[0][:300]}"
        self._write_summary("failed", best_effort=True, error=reason)
        if isinstance(err, KeyboardInterrupt):
            self._say_stopped()
        if not is_disk_full(err):
            raise err
        where = getattr(err, "filename", None) or self.run_dir
        if self._saved_step is None:
            kept = "no checkpoint was written yet; free some space and run the same command again"
        else:
            kept = (f"its last checkpoint (step {self._saved_step}) is intact; free some space and "
                    f"resume with `disentkit train --resume {self.run_dir}`")
        raise DiskFullError(
            f"no space left on the device writing {where} at step {self.step}: training stopped "
            f"and {self.run_dir / 'summary.json'} says failed; {kept}"
        ) from err

    def _loop(self, loggers: list[Any]) -> None:
        fabric, config = self.fabric, self.config
        steps, log_every = config.train.steps, max(1, config.log.every)
        from disentkit import cli

        if cli.WAITING_NOTE and config.train.accelerator == "cpu":
            _note(cli.WAITING_NOTE)  # said once training starts, after every check has passed
        self._progress = progress = _Progress(steps, self.step,
                                              enabled=fabric.is_global_zero and config.log.progress)
        self._watch = FiniteWatch()
        window_start, window_images = time.perf_counter(), 0
        # The state at a checkpoint step, encoded at the step boundary and written after the next
        # step once every loss so far is known to be finite (so "last good" really is good).
        pending: list[bytes] | None = None
        has_pending = False
        images_every = config.log.images_every
        self.model.train()
        while self.step < steps:
            try:
                logged, images = self._train_step()
            except NonFiniteLossError:
                raise
            except Exception:
                # a model may fail on NaN inputs (e.g. a distribution's argument check) before
                # the deferred check has seen the NaN loss: the NaN is the cause to report
                self._check_finite()
                raise
            window_images += images
            self.step += 1
            if has_pending:  # one host read: every loss up to this step was finite
                self._check_finite()
                self._write_snapshot(pending, self.step - 1)
                pending, has_pending = None, False
                self._write_summary("running")
            if images_every and self.step % images_every == 0:
                self._write_samples()
            if self.step % log_every == 0 or self.step == steps:
                self._check_finite()
                scalars = _mean_scalars([_scalars(terms) for terms in logged])
                if fabric.world_size > 1:
                    scalars = fabric.all_reduce(scalars, reduce_op="mean")
                record = {"step": self.step, **{k: float(v) for k, v in scalars.items()}}
                # timed after the reads above, which waited for the device to finish the window
                elapsed = time.perf_counter() - window_start
                self.train_time_s += elapsed
                record["lr"] = self.schedulers[0].get_last_lr()[0]
                record["images_per_s"] = window_images / max(elapsed, 1e-9)
                for logger in loggers:
                    logger.log(record)
                progress.update(self.step, record)
                window_start, window_images = time.perf_counter(), 0
            if self.step % config.train.checkpoint_every == 0 and self.step < steps:
                pending, has_pending = self._snapshot(), True
            if self._stop_requested:
                self._check_finite()
                self.save_checkpoint(pending)
                self._write_summary("interrupted")
                progress.close()
                self._say_stopped()
                return
        progress.close()
        self._check_finite()
        self.save_checkpoint()
        self._write_summary("finished")

    def _train_step(self) -> tuple[list[dict[str, torch.Tensor]], int]:
        """One optimiser step (every micro-batch, the updates, schedules and EMA) without a single
        host read of a device value, so a GPU never waits for the host between steps. Returns
        the logged terms of each micro-batch and the number of images seen (all processes)."""
        fabric, config = self.fabric, self.config
        model, raw = self.model, self.raw_model
        accumulate = config.train.accumulate
        logged: list[dict[str, torch.Tensor]] = []
        images = 0
        for i, indices in enumerate(self._micro_batch_indices()):
            last = i == accumulate - 1
            x = self._model_input(indices)
            # DDP: the gradients of an accumulated step are synchronised once, after the last
            with self._backward_sync(last):
                # autocast here too: with one device Fabric hands the marked method out as it is
                with fabric.autocast():
                    losses = self._losses(x, self.step)
                loss = losses["loss"]
                self._watch.observe(self.step, losses)
                fabric.backward(loss if accumulate == 1 else loss / accumulate)
            logged.append(losses if accumulate == 1 else
                          {k: (v.detach() if isinstance(v, torch.Tensor) else v)
                           for k, v in losses.items()})
            images += x.shape[0] * fabric.world_size
        for opt in self.optimisers:
            if config.train.grad_clip:
                fabric.clip_gradients(model, opt, max_norm=config.train.grad_clip,
                                      error_if_nonfinite=False)
            opt.step()
            opt.zero_grad(set_to_none=True)
        for sched in self.schedulers:
            sched.step()
        if self.ema is not None:
            self.ema.update(raw)
        return logged, images

    def _model_input(self, indices: torch.Tensor) -> torch.Tensor:
        """The float model input of one micro-batch. Host-to-device copies go through pinned
        memory without blocking (a blocking copy would wait for the device to go idle)."""
        device = self.fabric.device
        if device.type == "cuda" and getattr(self.data, "_device_images", None) is not None:
            indices = indices.pin_memory().to(device, non_blocking=True)
        batch = self.data.uint8_batch(indices)
        if batch.device != device:
            batch = batch.pin_memory().to(device, non_blocking=True) if device.type == "cuda" \
                else batch.to(device)
        x = to_model_input(batch, getattr(self.data, "value_max", 255), type(self.raw_model).input_range)
        return x.contiguous(memory_format=torch.channels_last) if self.config.train.channels_last \
            else x

    def _check_finite(self) -> None:
        """Stop with the NaN error when a loss since the start was not finite (one host read,
        agreed on by every process)."""
        watch = getattr(self, "_watch", None)
        if watch is None:
            return
        first = None
        if self.fabric.world_size > 1:
            local = watch.first_step_tensor()
            if local is None:
                local = torch.full((), 2**62, dtype=torch.int64, device=self.fabric.device)
            first = int(self.fabric.all_reduce(local, reduce_op="min"))
        found = watch.found(first)
        if found is None:
            return
        self._progress.close()
        self.step = found.step  # where it stopped, for the summary
        self._stop_non_finite(
            f"the loss became {found.loss} at step {found.step} (non-finite terms: "
            f"{_listed(found.bad_terms, 6) or 'none'})"
        )

    def _micro_batch_indices(self) -> list[torch.Tensor]:
        """This process's indices of each micro-batch of the next step: one draw of
        ``accumulate * world * per_process`` indices, laid out (micro-batch, rank, image). With
        accumulate = 1 this is one batch per step as before; one process with accumulate k sees
        the images of one k-times larger batch, in order."""
        fabric, accumulate = self.fabric, self.config.train.accumulate
        indices = self.sampler.next_indices(0, 1)
        per_micro = indices.numel() // accumulate
        per_rank = per_micro // fabric.world_size
        rank = fabric.global_rank
        return [indices[m * per_micro + rank * per_rank: m * per_micro + (rank + 1) * per_rank]
                for m in range(accumulate)]

    def _backward_sync(self, sync: bool) -> Any:
        """A context that skips DDP's gradient all-reduce unless ``sync``."""
        if sync or self.fabric.world_size == 1:
            return contextlib.nullcontext()
        return self.fabric.no_backward_sync(self.model, enabled=True)

    def _write_samples(self) -> None:
        """``samples/step_N.png`` from ``sample()`` with the EMA weights when there are some
        (rank 0; its own generator, so the training noise is untouched)."""
        if not self.fabric.is_global_zero:
            return
        raw, path = self.raw_model, sample_grid_path(self.run_dir, self.step)
        with self.ema.swapped_in(raw) if self.ema is not None else contextlib.nullcontext():
            write_sample_grid(raw, path, self.config.seed, self.fabric.device)


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


class _Progress:
    """A rich progress bar with loss and images/s on a terminal; otherwise (a pipe, a SLURM log)
    one line per logged step: ``step N/TOTAL  loss L  R img/s  ETA mm:ss``."""

    def __init__(self, total: int, start: int, enabled: bool) -> None:
        self.enabled = enabled
        self.total, self.start = total, start
        self.started = time.perf_counter()
        self.bar = None
        if enabled and sys.stderr.isatty():
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("train"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                TextColumn("{task.fields[info]}"), TimeRemainingColumn(), transient=False,
            )
            self.bar.start()
            self.task = self.bar.add_task("train", total=total, completed=start, info="")

    def update(self, step: int, record: dict[str, float]) -> None:
        if not self.enabled:
            return
        info = f"loss {record.get('loss', float('nan')):.4g}  {record['images_per_s']:.0f} img/s"
        if self.bar is not None:
            self.bar.update(self.task, completed=step, info=info)
        else:
            width = len(str(self.total))
            print(f"step {step:>{width}}/{self.total}  {info}  ETA {self.eta(step)}",
                  file=sys.stderr, flush=True)

    def eta(self, step: int) -> str:
        """Time left at the mean pace of this process's steps so far (``--:--`` before one)."""
        from disentkit.progress import clock

        done, elapsed = step - self.start, time.perf_counter() - self.started
        if done <= 0 or elapsed <= 0:
            return "--:--"
        return clock((self.total - step) * elapsed / done)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def run_training(config: RunConfig, run_dir: Path | None = None, resume: bool = False) -> Path:
    """Train ``config`` into ``run_dir`` (default ``out_dir/run_name``) and return the directory."""
    run_dir = Path(run_dir) if run_dir is not None else Path(config.out_dir) / config.run_name
    if not resume and any((run_dir / CHECKPOINT_DIR / n).exists() for n in (LAST, PREVIOUS)):
        raise FileExistsError(
            f"{run_dir} already holds a run; resume it with `disentkit train --resume {run_dir}`, "
            "or choose another name=/out_dir="
        )
    owns_process_group = not process_group_ready()
    trainer = Trainer(config, run_dir, resume=resume)
    finished = False
    try:
        trainer.fit()
        finished = True
    finally:
        if owns_process_group and process_group_ready():
            # The DDP wrapper holds the group's backend: free it while the group is still up, then
            # close the group, so no gloo object is torn down behind a closed group.
            del trainer
            gc.collect()
            close_process_group(wait_for_peers=finished)
    return run_dir

