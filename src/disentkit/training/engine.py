"""The training loop, on Lightning Fabric (devices, precision, DDP over processes and nodes).

One step: draw indices -> uint8 batch -> device -> float -> ``model.training_losses`` -> one
backward -> per-optimiser gradient clipping and step -> LR schedules -> EMA. Logging every
``log.every`` steps to ``metrics.jsonl`` (and TensorBoard), checkpoints every
``train.checkpoint_every`` steps and at the end, written atomically.

Exact resume: a checkpoint holds the model, every optimiser and schedule, the EMA, the batch
sampler's generator and every process's torch RNG state, taken at a step boundary. Resuming from
it replays the remaining steps with the same batches and the same noise, so (on CPU) the final
weights equal those of an uninterrupted run.

torchrun and SLURM launches are detected by Fabric from their environment variables; with
``train.devices > 1`` and no launcher, Fabric starts the processes itself.
"""

from __future__ import annotations

import gc
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch

from disentkit.builders import build_dataset, build_model, image_shape_of, to_model_input
from disentkit.config import RunConfig, save_config
from disentkit.models.base import Model, OptimiserSpec
from disentkit.training.checkpoint import load_checkpoint, save_atomic, write_text_atomic
from disentkit.training.cpu_memory import tune_glibc_malloc
from disentkit.training.distributed import (
    close_process_group,
    gather_rows,
    process_group_ready,
    remember_rank,
)
from disentkit.training.ema import EMA
from disentkit.training.loggers import JsonlLogger, TensorBoardLogger
from disentkit.training.sampler import BatchSampler
from disentkit.training.schedule import lr_multiplier

PRECISION = {"32": "32-true", "bf16-mixed": "bf16-mixed", "16-mixed": "16-mixed"}


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint was kept."""


def _make_optimiser(spec: OptimiserSpec, config: RunConfig) -> torch.optim.Optimizer:
    optim = config.optim
    kwargs = {
        "lr": spec.lr if spec.lr is not None else optim.lr,
        "betas": tuple(spec.betas if spec.betas is not None else optim.betas),
        "eps": spec.eps if spec.eps is not None else optim.eps,
        "weight_decay": spec.weight_decay if spec.weight_decay is not None else optim.weight_decay,
    }
    cls = torch.optim.AdamW if optim.name == "adamw" else torch.optim.Adam
    return cls(spec.param_groups, **kwargs)


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

    def __init__(self, config: RunConfig, run_dir: Path, resume: bool = False) -> None:
        from lightning_fabric import Fabric

        self.config = config
        self.run_dir = Path(run_dir)
        self.resume = resume
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

    # ------------------------------------------------------------------------------------------
    def _setup(self) -> None:
        fabric, config = self.fabric, self.config
        fabric.launch()
        remember_rank(fabric.global_rank)
        torch.manual_seed(config.seed)  # identical initial weights on every process
        self.data = build_dataset(config)
        if config.train.data_on_device:
            if not hasattr(self.data, "to"):
                raise ValueError(
                    f"train.data_on_device: dataset '{config.data.name}' cannot be moved to a "
                    "device (only in-memory ground-truth grids can); set train.data_on_device=false"
                )
            self.data.to(fabric.device)
        self.image_shape = image_shape_of(self.data)
        model: Model = build_model(config, self.image_shape, len(self.data))
        optimisers = [_make_optimiser(spec, config) for spec in model.optimiser_specs()]
        wrapped = fabric.setup(model, *optimisers)
        self.model, self.optimisers = wrapped[0], list(wrapped[1:])
        self.model.mark_forward_method("training_losses")
        self.raw_model: Model = self.model.module
        multiplier = lr_multiplier(config.schedule, config.train.steps)
        self.schedulers = [
            torch.optim.lr_scheduler.LambdaLR(opt.optimizer, multiplier) for opt in self.optimisers
        ]
        self.ema = (
            EMA(self.raw_model, config.train.ema_decay, config.train.ema_modules)
            if config.train.ema_decay else None
        )
        world = fabric.world_size
        per_process = config.train.batch_size * self.raw_model.batch_multiplier
        self.sampler = BatchSampler(len(self.data), per_process * world, config.seed)
        # Distinct noise per process, reproducible from (seed, rank).
        torch.manual_seed(config.seed * 100_003 + fabric.global_rank + 1)
        self.step = 0

    def _state(self) -> dict[str, Any]:
        rng = torch.get_rng_state()
        rngs = gather_rows(rng.to(self.fabric.device)).cpu() if self.fabric.world_size > 1 \
            else rng.unsqueeze(0)
        state: dict[str, Any] = {
            "step": self.step,
            "image_shape": list(self.image_shape),
            "dataset_size": len(self.data),
            "model": self.raw_model.state_dict(),
            "optimisers": [opt.optimizer.state_dict() for opt in self.optimisers],
            "schedulers": [s.state_dict() for s in self.schedulers],
            "sampler": self.sampler.state_dict(),
            "torch_rng": rngs.reshape(self.fabric.world_size, -1),
        }
        if torch.cuda.is_available() and self.fabric.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.fabric.device)
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        return state

    def _load_state(self, state: dict[str, Any]) -> None:
        self.raw_model.load_state_dict(state["model"])
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

    def save_checkpoint(self, name: str = "last.pt") -> None:
        state = self._state()  # all ranks take part in the RNG gather
        if self.fabric.is_global_zero:
            save_atomic(state, self.run_dir / "checkpoints" / name)
        self.fabric.barrier()

    def _write_summary(self, status: str, **extra: Any) -> None:
        if not self.fabric.is_global_zero:
            return
        summary = {"status": status, "step": self.step, "steps": self.config.train.steps, **extra}
        write_text_atomic(self.run_dir / "summary.json", json.dumps(summary, indent=2))

    def _request_stop(self, signum: int, frame: Any) -> None:  # pragma: no cover - signal path
        self._stop_requested = True

    # ------------------------------------------------------------------------------------------
    def fit(self) -> Path:
        self._setup()
        fabric, config = self.fabric, self.config
        if fabric.is_global_zero:
            (self.run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
            save_config(config, self.run_dir / "config.yaml")
        fabric.barrier()
        if self.resume:
            checkpoint = self.run_dir / "checkpoints" / "last.pt"
            if checkpoint.exists():
                self._load_state(load_checkpoint(checkpoint))
        loggers: list[Any] = []
        if fabric.is_global_zero:
            loggers.append(JsonlLogger(self.run_dir / "metrics.jsonl", self.step if self.resume else None))
            if config.log.tensorboard:
                loggers.append(TensorBoardLogger(self.run_dir / "tensorboard"))
        previous_handlers: dict[int, Any] = {}
        if sys.platform != "win32" and _in_main_thread():
            # SLURM sends SIGUSR1/SIGTERM before pre-emption: checkpoint at the next step boundary.
            for sig in (signal.SIGUSR1, signal.SIGTERM):
                previous_handlers[sig] = signal.signal(sig, self._request_stop)
        self._write_summary("running")
        try:
            self._loop(loggers)
        finally:
            for logger in loggers:
                logger.close()
            # Outside the loop nothing polls the stop flag: give the signals back to their previous
            # handlers so a SIGTERM during the end-of-run evaluation (or in a notebook) ends the process.
            for sig, handler in previous_handlers.items():
                signal.signal(sig, handler)
        return self.run_dir

    def _loop(self, loggers: list[Any]) -> None:
        fabric, config = self.fabric, self.config
        model, raw = self.model, self.raw_model
        steps, log_every = config.train.steps, max(1, config.log.every)
        value_max = getattr(self.data, "value_max", 255)
        progress = _Progress(steps, self.step, enabled=fabric.is_global_zero and config.log.progress)
        window_start, window_images = time.perf_counter(), 0
        model.train()
        while self.step < steps:
            indices = self.sampler.next_indices(fabric.global_rank, fabric.world_size)
            batch = fabric.to_device(self.data.uint8_batch(indices))
            x = to_model_input(batch, value_max, type(raw).input_range)
            losses = model.training_losses(x, self.step)
            loss = losses["loss"]
            finite = torch.isfinite(loss.detach()).float()
            if fabric.world_size > 1:
                finite = fabric.all_reduce(finite, reduce_op="min")
            if finite.item() < 1.0:
                self._write_summary("failed", error=f"non-finite loss at step {self.step}")
                terms = {k: float(v) for k, v in _scalars(losses).items() if v.numel() == 1}
                raise NonFiniteLossError(
                    f"the loss became {float(loss.detach())} at step {self.step} (terms: {terms}). Training "
                    f"stopped; the last good checkpoint is kept in {self.run_dir / 'checkpoints'}. "
                    "Lower optim.lr, set train.grad_clip, or check the data; resume with "
                    f"`disentkit train --resume {self.run_dir}` after changing config.yaml."
                )
            fabric.backward(loss)
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
            self.step += 1
            window_images += x.shape[0] * fabric.world_size
            if self.step % log_every == 0 or self.step == steps:
                scalars = _scalars(losses)
                if fabric.world_size > 1:
                    scalars = fabric.all_reduce(scalars, reduce_op="mean")
                elapsed = time.perf_counter() - window_start
                record = {"step": self.step, **{k: float(v) for k, v in scalars.items()}}
                record["lr"] = self.schedulers[0].get_last_lr()[0]
                record["images_per_s"] = window_images / max(elapsed, 1e-9)
                for logger in loggers:
                    logger.log(record)
                progress.update(self.step, record)
                window_start, window_images = time.perf_counter(), 0
            if self.step % config.train.checkpoint_every == 0 and self.step < steps:
                self.save_checkpoint()
                self._write_summary("running")
            if self._stop_requested:
                self.save_checkpoint()
                self._write_summary("interrupted")
                progress.close()
                return
        progress.close()
        self.save_checkpoint()
        self._write_summary("finished")


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


class _Progress:
    """A rich progress bar with loss and images/s on a terminal; plain log lines otherwise."""

    def __init__(self, total: int, start: int, enabled: bool) -> None:
        self.enabled = enabled
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
            print(f"step {step}: {info}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def run_training(config: RunConfig, run_dir: Path | None = None, resume: bool = False) -> Path:
    """Train ``config`` into ``run_dir`` (default ``out_dir/run_name``) and return the directory."""
    run_dir = Path(run_dir) if run_dir is not None else Path(config.out_dir) / config.run_name
    if not resume and (run_dir / "checkpoints" / "last.pt").exists():
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

