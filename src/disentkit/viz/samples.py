"""Samples of a generative run as one PNG grid.

A diffusion model (one that lists ``samplers``, e.g. ``ddpm``) runs its own sampler from
x_T ~ N(0, I); a model with ``decode`` (the VAE family) decodes prior draws z ~ N(0, I). Every
draw comes from one CPU ``torch.Generator`` seeded with ``seed``, so the grid is the same on any
device for the same seed. Images come back in the model's pixel range and are shown through
:func:`disentkit.pixels.for_display`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from disentkit.errors import UserError
from disentkit.viz.images import make_grid, save_png, to_display, to_uint8

__all__ = ["CannotSampleError", "describe", "draw_samples", "is_diffusion", "sample_grid", "write_samples"]


class CannotSampleError(UserError, TypeError):
    """The run's model can neither sample nor decode prior draws, or was asked for a sampler
    setting it does not have."""


def _device(model: torch.nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _name(model: torch.nn.Module) -> str:
    return str(getattr(model, "registry_name", type(model).__name__))


def is_diffusion(model: torch.nn.Module) -> bool:
    """Whether ``model`` samples with its own sampler (it lists ``samplers``)."""
    return bool(getattr(type(model), "samplers", ()))


@torch.inference_mode()
def draw_samples(model: torch.nn.Module, num: int, seed: int = 0, steps: int | None = None,
                 sampler: str | None = None, batch_size: int = 64) -> torch.Tensor:
    """``num`` samples as float NCHW images in [0, 1] on the CPU, in batches of ``batch_size``.

    ``steps`` and ``sampler`` apply to diffusion models only (default: their config's
    ``sample_steps`` and ``sampler``); a model that cannot sample raises
    :class:`CannotSampleError` (one line).
    """
    if num < 1:
        raise CannotSampleError(f"the number of samples must be at least 1, got {num}")
    generator = torch.Generator().manual_seed(int(seed))
    diffusion = is_diffusion(model)
    if not diffusion:
        _check_decoder(model, steps, sampler)
    if diffusion and sampler is not None and sampler not in type(model).samplers:
        raise CannotSampleError(f"{_name(model)} has no sampler {sampler!r:.40}; choose one of "
                                f"{', '.join(type(model).samplers)}")
    was_training = model.training
    model.eval()
    try:
        chunks = []
        for start in range(0, num, batch_size):
            n = min(batch_size, num - start)
            if diffusion:
                images = model.sample(n, generator=generator, steps=steps, sampler=sampler)
            else:
                z = torch.randn(n, int(model.latent_dim), generator=generator)
                images = model.decode(z.to(_device(model)))
            chunks.append(to_display(images.float().cpu(), model))
    finally:
        model.train(was_training)
    return torch.cat(chunks)


def _latent_dim(model: torch.nn.Module) -> int | None:
    try:
        return int(model.latent_dim)
    except (AttributeError, TypeError, ValueError):
        return None


def _check_decoder(model: torch.nn.Module, steps: int | None, sampler: str | None) -> None:
    if not callable(getattr(model, "decode", None)) or _latent_dim(model) is None:
        raise CannotSampleError(
            f"{_name(model)} cannot draw samples: it has neither a sampler nor decode(z) for prior "
            "draws; `disentkit sample` works for generative runs (the VAE family, ddpm)")
    if steps is not None or sampler is not None:
        raise CannotSampleError(
            f"--steps and --sampler apply to diffusion runs; {_name(model)} samples by decoding "
            "prior draws z ~ N(0, I), so drop them")


def sample_grid(images01: torch.Tensor, per_row: int | None = None) -> np.ndarray:
    """[0, 1] NCHW images as one uint8 grid, ``per_row`` wide (default: about square)."""
    n = images01.shape[0]
    cols = per_row or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    tiles = to_uint8(images01)
    h, w = tiles.shape[1:3]
    padded = np.full((rows * cols, h, w, 3), 255, np.uint8)
    padded[:n] = tiles
    return make_grid(padded.reshape(rows, cols, h, w, 3))


def write_samples(model: torch.nn.Module, path: Path, num: int = 64, seed: int = 0,
                  steps: int | None = None, sampler: str | None = None,
                  per_row: int | None = None) -> Path:
    """Draw ``num`` samples (:func:`draw_samples`) and write them as one PNG grid to ``path``."""
    images = draw_samples(model, num, seed=seed, steps=steps, sampler=sampler)
    return save_png(sample_grid(images, per_row), Path(path))


def describe(model: torch.nn.Module, steps: int | None = None, sampler: str | None = None) -> str:
    """How the samples were drawn, for captions: ``ddim, 20 steps`` or ``decoded prior draws``."""
    if not is_diffusion(model):
        return "decoded prior draws z ~ N(0, I)"
    cfg = model.config
    sampler = sampler or getattr(cfg, "sampler", "")
    if sampler == "ddim":
        return f"ddim, {steps or getattr(cfg, 'sample_steps', '?')} steps"
    return f"{sampler}, all {getattr(cfg, 'num_steps', '?')} steps"
