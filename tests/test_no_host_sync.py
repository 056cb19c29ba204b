"""A training step never reads a device value on the host (issue 16: no host sync per step).

On CPU "a host read" is counted with a hook: every Python-level conversion of a tensor to a host
value (``item``, ``tolist``, ``numpy``, ``cpu``, ``bool``, ``float``, ``int``, ``index``) made while
``Trainer._train_step`` runs. Two callers are left out because their tensors live on the host in
a GPU run as well: torch's optimisers reading their own step counters (host tensors unless
fused/capturable) and the data path before the batch reaches the device (sampled indices). On a
CUDA machine ``torch.cuda.set_sync_debug_mode("error")`` checks the same steps exactly.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import disentkit
import toy_plugin
from disentkit.config import load_config
from disentkit.training import engine
from disentkit.training.checkpoint import load_checkpoint
from disentkit.training.engine import NonFiniteLossError

BASE = [
    "imports=[toy_plugin]", "data.name=toy_bars", "model.name=betavae", "model.latent_dim=4",
    "train.batch_size=4", "optim.lr=1e-3", "log.progress=false", "train.num_threads=1",
    "eval.at_end=false", "eval.report_at_end=false",
]
TOY = [x for x in BASE if not x.startswith("model.")] + ["model.name=toy_ae"]

#: Tensor methods that hand a device value to the host (each one waits for the device on CUDA)
HOST_READS = ("item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__")
#: callers whose tensors are host tensors in a GPU run too (see the module docstring)
HOST_SIDE = ("torch/optim/", "disentkit/data/", "disentkit/training/sampler.py")


class HostReads:
    """Counts host reads while ``active``; ``where`` keeps the callers for the failure message."""

    def __init__(self) -> None:
        self.active = False
        self.where: list[str] = []


@contextlib.contextmanager
def counting_host_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[HostReads]:
    reads = HostReads()
    for name in HOST_READS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, __original=original, __name=name, **kwargs):
            if reads.active:
                caller = sys._getframe(1).f_code.co_filename.replace("\\", "/")
                if not any(part in caller for part in HOST_SIDE):
                    reads.where.append(f"{__name} from {caller}:{sys._getframe(1).f_lineno}")
            return __original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    yield reads


def _watch_steps(monkeypatch: pytest.MonkeyPatch, reads: HostReads) -> list[int]:
    """Count host reads inside every ``_train_step``; returns the list of steps it ran."""
    steps: list[int] = []
    original = engine.Trainer._train_step

    def watched(self):
        steps.append(self.step)
        reads.active = True
        try:
            return original(self)
        finally:
            reads.active = False

    monkeypatch.setattr(engine.Trainer, "_train_step", watched)
    return steps


def test_training_steps_make_no_host_read(tmp_path: Path, monkeypatch) -> None:
    """beta-VAE with EMA, gradient clipping, accumulation, a schedule and checkpoints: 0 reads."""
    config = load_config(None, [*BASE, f"out_dir={tmp_path}", "name=r", "train.steps=6",
                                "log.every=3", "train.checkpoint_every=2", "train.ema_decay=0.9",
                                "train.grad_clip=1.0", "train.accumulate=2",
                                "lr_schedule.name=cosine"])
    with counting_host_reads(monkeypatch) as reads:
        steps = _watch_steps(monkeypatch, reads)
        disentkit.train(config)
    assert steps == list(range(6))
    assert reads.where == []
    rows = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [3, 6]  # the log steps still read the losses


def test_the_hook_sees_a_host_read_in_a_step(tmp_path: Path, monkeypatch) -> None:
    """The counting hook is not blind: a model that reads its loss each step is caught."""
    original = toy_plugin.ToyAE.training_losses

    def reading(self, batch, step):
        losses = original(self, batch, step)
        if losses["loss"] > 1e9:  # a host read of a device value
            pass
        return losses

    monkeypatch.setattr(toy_plugin.ToyAE, "training_losses", reading)
    config = load_config(None, [*TOY, f"out_dir={tmp_path}", "name=r", "train.steps=2",
                                "log.every=2"])
    with counting_host_reads(monkeypatch) as reads:
        _watch_steps(monkeypatch, reads)
        disentkit.train(config)
    assert len(reads.where) == 2 and all("__bool__" in w for w in reads.where)


@pytest.mark.parametrize(("nan_at", "saved"), [(3, None), (7, 6)])
def test_deferred_nan_check_keeps_only_good_checkpoints(tmp_path: Path, nan_at, saved) -> None:
    """Log steps far apart, a checkpoint every 3 steps: the loss of step ``nan_at`` is NaN. The
    stop names that step, and the checkpoint kept is the last one whose next loss was finite
    (the step-3 checkpoint waits for the loss of its own weights, which is NaN in the first case)."""
    config = load_config(None, [*TOY, f"out_dir={tmp_path}", "name=r", "train.steps=40",
                                "log.every=20", "train.checkpoint_every=3",
                                f"model.nan_at_step={nan_at}"])
    with pytest.raises(NonFiniteLossError, match=f"became nan at step {nan_at} ") as info:
        disentkit.train(config)
    last = tmp_path / "r" / "checkpoints" / "last.pt"
    if saved is None:
        assert not last.exists() and "no checkpoint was written yet" in str(info.value)
    else:
        state = load_checkpoint(last)
        assert state["step"] == saved and f"(step {saved})" in str(info.value)
        assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert "non-finite terms: loss" in str(info.value)
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["step"] == nan_at


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_steps_issue_no_sync(tmp_path: Path, monkeypatch) -> None:  # pragma: no cover - GPU
    """On CUDA, every step after the first runs under set_sync_debug_mode('error')."""
    original = engine.Trainer._train_step

    def strict(self):
        torch.cuda.set_sync_debug_mode("error" if self.step > 0 else "default")
        try:
            return original(self)
        finally:
            torch.cuda.set_sync_debug_mode("default")

    monkeypatch.setattr(engine.Trainer, "_train_step", strict)
    for on_device in ("false", "true"):
        config = load_config(None, [*BASE, f"out_dir={tmp_path}", f"name=r{on_device}",
                                    "train.accelerator=cuda", "train.steps=5", "log.every=5",
                                    "train.ema_decay=0.9", f"train.data_on_device={on_device}",
                                    "optim.fused=true", "train.precision=bf16-mixed"])
        disentkit.train(config)
