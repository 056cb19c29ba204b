"""The model contract every method implements.

A model is an ``nn.Module`` that owns its maths:

* ``training_losses(batch, step) -> dict``: ``batch`` is float NCHW in [0, 1] on the device,
  of ``batch_multiplier * train.batch_size`` images. The dict holds a scalar ``loss`` (what the
  engine back-propagates once) plus named terms that are logged. Models with several optimisers
  (FactorVAE's discriminator) put every optimiser's objective into ``loss`` and block the
  cross-gradients themselves (detach the inputs one side must not train, evaluate the other side
  with detached parameters), so a single backward pass gives each parameter exactly the gradient
  of its own objective. This is what makes them work unchanged under DDP, which allows one
  backward per forward.
* ``encode(x) -> codes``: the representation used for evaluation (documented per method).
* ``decode``/``reconstruct``/``sample`` where they apply (used by traversals and reports).
* ``optimiser_specs(optim)``: which parameters each optimiser steps, with per-group settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn


@dataclass
class OptimiserSpec:
    """One optimiser: its parameter groups (torch format, may carry their own ``lr``) and the
    settings that differ from the run's ``optim`` section (None: take the run's value)."""

    name: str
    param_groups: list[dict[str, Any]]
    lr: float | None = None
    betas: tuple[float, float] | None = None
    eps: float | None = None
    weight_decay: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Model(nn.Module):
    """Base class of every method. Subclasses set ``Config`` (a dataclass of hyperparameters)."""

    Config: ClassVar[type]
    #: how many batches of ``train.batch_size`` images one training step consumes
    #: (2 for FactorVAE's independent second batch).
    batch_multiplier: ClassVar[int] = 1
    #: the pixel range the model expects: "01" ([0, 1]) or "pm1" ([-1, 1], diffusion models)
    input_range: ClassVar[str] = "01"

    def __init__(self, config: Any, image_shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.config = config
        self.image_shape = tuple(image_shape)  # (C, H, W)

    # ---- training ----------------------------------------------------------------------------
    def training_losses(self, batch: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def optimiser_specs(self) -> list[OptimiserSpec]:
        """Default: one optimiser over all parameters with the run's settings."""
        return [OptimiserSpec("main", [{"params": [p for p in self.parameters() if p.requires_grad]}])]

    # ---- inference ---------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @property
    def latent_dim(self) -> int:
        return int(self.config.latent_dim)
